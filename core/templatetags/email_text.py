"""Filters for the plain-text parts of emails."""

from __future__ import annotations

from django import template

from core.mail import name_in_text

register = template.Library()


@register.filter
def isolated(value: object) -> str:
    """A user-chosen name in a plain-text sentence: what `<bdi>` does in the HTML part
    (`core.mail.name_in_text`)."""
    return name_in_text(str(value))
