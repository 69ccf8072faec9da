from django import template
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from questions.models import Question
from questions.search import Node, QueryError, highlight, parse
from questions.searching import departments
from questions.timeliness import department_url

register = template.Library()
QUOTE_MARKS = str.maketrans({mark: " " for mark in '"“”„'})


def field_query(field: str, value: str) -> str:
    """The search for questions whose `field` has the phrase `value` (a member, a department), or "" when the
    value makes no search. Quote marks in the value would end the phrase early: they go."""
    words = " ".join((value or "").translate(QUOTE_MARKS).split())
    query = f'{field}:"{words}"'
    try:
        parse(query)
    except QueryError:
        return ""
    return query


@register.simple_tag
def field_search(field: str, value: str) -> str:
    """The search page of `field_query`, or "" when the value makes no search."""
    query = field_query(field, value)
    return f"{reverse('search')}?{urlencode({'q': query})}" if query else ""


@register.simple_tag
def highlighted(text: str, node: Node | None, field: str | None = None) -> str:
    """The text with the words the search looked for marked; plain escaped text without a search."""
    return mark_safe(highlight(text or "", node, field)) if node else escape(text or "")


@register.simple_tag
def answer_paragraphs(text: str, node: Node | None) -> list[str]:
    return [highlighted(paragraph, node, "answer") for paragraph in (text or "").split("\n\n") if paragraph.strip()]


@register.simple_tag
def days_overdue(question: Question) -> int | None:
    """How many days ago the question's answer was due, while it is overdue (today where the site is)."""
    return question.days_overdue(timezone.localdate())


@register.simple_tag
def department_page(name: str) -> str:
    """The page of how quickly the department `name` answers, or "" without a name."""
    return department_url(name, departments()) if name else ""


@register.simple_tag
def due_note(question: Question | None) -> str:
    """`Question.due_note` today where the site is; "" for a follow whose question has gone."""
    return question.due_note(timezone.localdate()) if isinstance(question, Question) else ""
