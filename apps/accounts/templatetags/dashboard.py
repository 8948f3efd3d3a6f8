"""Template helpers for the dashboard: relative times in a `<time>` element."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince, timeuntil

from core.times import iso

register = template.Library()

JUST_NOW = timedelta(seconds=60)


def utc_text(value: datetime) -> str:
    """`26 May 2027, 14:05 UTC` — the dashboard shows every time in UTC."""
    return value.astimezone(UTC).strftime("%-d %b %Y, %H:%M UTC")


@register.filter
def relative(value: datetime | None, never: str = "Never") -> str:
    """`3 minutes ago`, `in 2 days, 5 hours`, `just now` (`in less than a minute` ahead);
    `never` when there is no time. A time ahead takes two units: one, cut down, read "in 6
    days" for an invitation made a moment ago "valid for 7 days" (a UX review)."""
    if value is None:
        return never
    now = timezone.now()
    if abs(now - value) < JUST_NOW:
        return "in less than a minute" if value > now else "just now"
    if value > now:
        return f"in {timeuntil(value, now, depth=2)}".replace("\xa0", " ")
    return f"{timesince(value, now, depth=1)} ago".replace("\xa0", " ")


@register.filter
def passed(value: datetime | None) -> bool:
    """Whether `value` is now or before (a key whose `expires_at` has passed has expired)."""
    return value is not None and value <= timezone.now()


@register.filter
def utc(value: datetime | None) -> str:
    return utc_text(value) if value is not None else ""


@register.filter
def utc_lines(value: datetime | None) -> str:
    """`utc` for a narrow column: its date and its time each one unbroken box, so the time
    takes two lines at most ("7 Dec 2026," / "23:47 UTC"), never three; escaped."""
    if value is None:
        return ""
    date, _, time = utc_text(value).rpartition(", ")
    return format_html(
        '<span class="nobreak">{},</span> <span class="nobreak">{}</span>', date, time
    )


@register.simple_tag
def when(value: datetime | None, never: str = "Never"):
    """A relative time with the exact UTC time as its machine value and tooltip, and as
    text for screen readers (an accessibility audit: a tooltip is a mouse's only)."""
    if value is None:
        return never
    exact = utc_text(value)
    # HTML's date-time takes at most three fractional digits (the API writes six).
    machine = iso(value, timespec="milliseconds")
    return format_html(
        '<time datetime="{}" title="{}">{}<span class="visually-hidden"> ({})</span></time>',
        machine,
        exact,
        relative(value),
        exact,
    )


@register.filter
def machine(value: datetime | None) -> str:
    """A time for a script (`2026-12-07T13:33:31.334Z`): ECMAScript's date format has three
    fractional digits, and only some engines read Django's `c` (six, and `+00:00`)."""
    return iso(value, timespec="milliseconds") if value is not None else ""


@register.simple_tag
def machine_now() -> str:
    return machine(timezone.now())


#: (marker in the user agent, name shown), first match wins: Edge and Opera also say Chrome.
_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("HeadlessChrome/", "Headless Chrome"),
    ("Chrome/", "Chrome"),
    ("Chromium/", "Chromium"),
    ("Safari/", "Safari"),
    ("curl/", "curl"),
    ("python-requests/", "Python requests"),
    ("Python-urllib/", "Python urllib"),
)
_SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


@register.filter
def breakable_email(email: str) -> str:
    """An address that wraps before its `@` first: its local part and its `@domain` each in
    a `.email-part` box (app.css) that breaks inside only when it alone is wider than its
    column; escaped. A bare <wbr> was not enough: a column free to wrap anywhere was
    squeezed below the domain's width (`demo@sigsentry.de` / `v` on the Members page)."""
    local, at, domain = (email or "").rpartition("@")
    if not at:
        return email
    return format_html(
        '<span class="email-part">{}</span><wbr><span class="email-part">@{}</span>', local, domain
    )


@register.filter
def breakable_name(name: str) -> str:
    """A dotted or snake_case name (`legacy_keys.imported`) that may wrap after each `.` and
    `_` and nowhere else: a chip broken inside a word (`legacy_keys.import` / `ed`) read as
    two names (a first-hour walkthrough, at 390 px and at 1280); escaped."""
    parts = re.split(r"(?<=[._])", name or "")
    return format_html_join(mark_safe("<wbr>"), "{}", ((part,) for part in parts if part))


@register.filter
def device(user_agent: str) -> str:
    """`Firefox on Linux` from a user agent; `Unknown device` when there is none."""
    if not user_agent:
        return "Unknown device"
    browser = next((name for marker, name in _BROWSERS if marker in user_agent), None)
    system = next((name for marker, name in _SYSTEMS if marker in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or user_agent[:40]
