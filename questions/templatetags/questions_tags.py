from django import template
from django.utils.html import escape
from django.utils.safestring import mark_safe

from questions.search import Node, highlight

register = template.Library()


@register.simple_tag
def highlighted(text: str, node: Node | None, field: str | None = None) -> str:
    """The text with the words the search looked for marked; plain escaped text without a search."""
    return mark_safe(highlight(text or "", node, field)) if node else escape(text or "")


@register.simple_tag
def answer_paragraphs(text: str, node: Node | None) -> list[str]:
    return [highlighted(paragraph, node, "answer") for paragraph in (text or "").split("\n\n") if paragraph.strip()]
