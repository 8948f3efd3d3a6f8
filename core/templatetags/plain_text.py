"""Filters for names in plain text, which has no `<bdi>`: emails' subjects and plain-text
parts, pages' `<title>`."""

from __future__ import annotations

from django import template

from core.mail import name_in_text

register = template.Library()


@register.filter
def isolated(value: object) -> str:
    """A user-chosen name in a plain-text sentence (an email's subject or text part, a
    page's title): what `<bdi>` does in markup, and only where the name could reorder the
    sentence (`core.mail.name_in_text`)."""
    return name_in_text(str(value))
