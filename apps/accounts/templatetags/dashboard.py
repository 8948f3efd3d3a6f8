"""Template helpers for the dashboard: relative times in a `<time>` element."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince, timeuntil

from core.api import iso

register = template.Library()

JUST_NOW = timedelta(seconds=60)


def utc_text(value: datetime) -> str:
    """`26 May 2027, 14:05 UTC` — the dashboard shows every time in UTC."""
    return value.astimezone(UTC).strftime("%-d %b %Y, %H:%M UTC")


@register.filter
def relative(value: datetime | None, never: str = "Never") -> str:
    """`3 minutes ago`, `in 2 days`, `just now`; `never` when there is no time."""
    if value is None:
        return never
    now = timezone.now()
    if abs(now - value) < JUST_NOW:
        return "just now"
    if value > now:
        return f"in {timeuntil(value, now, depth=1)}".replace("\xa0", " ")
    return f"{timesince(value, now, depth=1)} ago".replace("\xa0", " ")


@register.filter
def utc(value: datetime | None) -> str:
    return utc_text(value) if value is not None else ""


@register.simple_tag
def when(value: datetime | None, never: str = "Never"):
    """A relative time with the exact UTC time as its machine value and tooltip."""
    if value is None:
        return never
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        iso(value),
        utc_text(value),
        relative(value),
    )
