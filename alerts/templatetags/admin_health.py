from django import template

from alerts.overview import failing_sources as failing

register = template.Library()


@register.simple_tag
def failing_sources():
    """For the admin's home page, which Django's own view renders: what is not coming in now."""
    return failing()
