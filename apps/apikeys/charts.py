"""Request charts for the key pages: geometry for server-rendered SVG, no chart library.

A chart is a list of usage buckets (`{"start", "requests", "refused"}`, oldest
first, as `apps.apikeys.usage.answer` gives them) turned into numbers in SVG user units;
the templates (`templates/apikeys/_usage_*.html`) draw them, so every piece of
text goes through Django's escaping. Each bucket's column carries a tooltip
(`<title>`), each chart an accessible name and a one-sentence summary.

* `sparkline`: the 30-day bars of a key's row, fixed size, drawn by `sparkline_svg`
  (in Python, its texts escaped: a key page draws 50).
* `bar_chart`: the detail page's hourly (48 h) and daily (90 d) charts with
  axes; refusals are stacked on top of accepted requests in another colour.
  Rendered twice (`WIDE`, `NARROW`) and chosen by CSS, so the labels stay
  legible on a phone instead of shrinking with the picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

Bucket = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Column:
    """One bucket: its accepted and refused bars, and the full-height hover area."""

    x: float
    width: float
    slot_x: float
    slot_width: float
    accepted_y: float
    accepted_height: float
    refused_y: float
    refused_height: float
    label: str
    current: bool


@dataclass(frozen=True, slots=True)
class Tick:
    position: float
    label: str
    anchor: str = "middle"


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    top: float
    bottom: float
    left: float
    right: float
    columns: tuple[Column, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    title: str
    summary: str
    requests: int
    refused: int

    @property
    def empty(self) -> bool:
        return self.requests == 0

    @property
    def requests_text(self) -> str:
        return f"{self.requests:,}"

    @property
    def refused_text(self) -> str:
        return f"{self.refused:,}"

    @property
    def middle(self) -> float:
        return round((self.top + self.bottom) / 2, 2)

    @property
    def center(self) -> float:
        return round((self.left + self.right) / 2, 2)

    @property
    def plot_height(self) -> float:
        return round(self.bottom - self.top, 2)

    @property
    def y_label_x(self) -> float:
        return self.left - 7

    @property
    def x_label_y(self) -> float:
        return self.bottom + 19

    @property
    def x_tick_end(self) -> float:
        return self.bottom + 4


@dataclass(frozen=True, slots=True)
class Layout:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    #: Label every n-th hour / day.
    hour_step: int
    day_step: int


WIDE = Layout(width=760, height=232, left=46, right=10, top=14, bottom=30, hour_step=6, day_step=14)
NARROW = Layout(
    width=360, height=220, left=38, right=8, top=14, bottom=30, hour_step=12, day_step=30
)
SPARK_WIDTH, SPARK_HEIGHT, SPARK_GAP = 108, 26, 1.0
#: Between a day's accepted bar and its refused cap: within the sparkline's 2-unit top margin.
SPARK_CAP_GAP = 1.0
MIN_BAR_HEIGHT = 1.5


def _round(value: float) -> float:
    return round(value, 2)


def compact(number: int) -> str:
    """`950`, `1.2k`, `15k`, `2.4M`: axis labels that fit."""
    if number < 1000:
        return str(number)
    text = str(number)
    for size, suffix in ((1_000, "k"), (1_000_000, "M"), (1_000_000_000, "G")):
        scaled = number / size
        text = (f"{scaled:.1f}" if scaled < 10 else f"{scaled:.0f}").removesuffix(".0") + suffix
        if float(text[:-1]) < 1000:
            break
    return text


def nice_ceiling(value: int) -> int:
    """The axis maximum for a busiest bucket of `value`: four whole, round steps
    (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten each) reaching at least `value`."""
    step = max(1, math.ceil(value / 4))
    magnitude = 10 ** math.floor(math.log10(step))
    for factor in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        candidate = factor * magnitude
        if candidate >= step and candidate == int(candidate):
            return 4 * int(candidate)
    return 40 * magnitude


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _period(start: datetime, granularity: str) -> str:
    if granularity == "hour":
        end = start + timedelta(hours=1)
        return f"{start:%a %-d %b}, {start:%H:%M} to {end:%H:%M} UTC"
    return f"{start:%a %-d %b %Y}"


def _counts(bucket: Bucket) -> str:
    text = plural(bucket["requests"], "request")
    if bucket["refused"]:
        text += f", {bucket['refused']:,} refused"
    return text


def _summary(series: list[Bucket], span: str, granularity: str) -> str:
    requests = sum(b["requests"] for b in series)
    refused = sum(b["refused"] for b in series)
    if not requests:
        return f"No requests in the last {span}."
    busiest = max(series, key=lambda b: b["requests"])
    text = f"{plural(requests, 'request')} in the last {span}"
    text += f", {refused:,} refused" if refused else ", none refused"
    return f"{text}. Busiest: {_period(busiest['start'], granularity)} ({busiest['requests']:,})."


def _columns(
    series: list[Bucket],
    granularity: str,
    *,
    left: float,
    right: float,
    top: float,
    bottom: float,
    scale_max: int,
    gap: float,
    now: datetime | None,
) -> tuple[Column, ...]:
    slot = (right - left) / max(len(series), 1)
    width = max(slot - gap, 1.0)
    height = bottom - top
    columns = []
    for index, bucket in enumerate(series):
        slot_x = left + index * slot
        accepted = bucket["requests"] - bucket["refused"]
        accepted_height = _visible(height * accepted / scale_max if scale_max else 0, accepted)
        refused_height = _visible(
            height * bucket["refused"] / scale_max if scale_max else 0, bucket["refused"]
        )
        accepted_y = bottom - accepted_height
        step = timedelta(hours=1) if granularity == "hour" else timedelta(days=1)
        current = now is not None and bucket["start"] <= now < bucket["start"] + step
        label = f"{_period(bucket['start'], granularity)}: {_counts(bucket)}"
        columns.append(
            Column(
                x=_round(slot_x + (slot - width) / 2),
                width=_round(width),
                slot_x=_round(slot_x),
                slot_width=_round(slot),
                accepted_y=_round(accepted_y),
                accepted_height=_round(accepted_height),
                refused_y=_round(accepted_y - refused_height),
                refused_height=_round(refused_height),
                label=label + (" (so far)" if current else ""),
                current=current,
            )
        )
    return tuple(columns)


def _visible(height: float, count: int) -> float:
    """A bucket with any request shows at least a sliver: 1 request in 10,000 is not 0."""
    return max(height, MIN_BAR_HEIGHT) if count else 0.0


def sparkline(series: list[Bucket], now: datetime | None = None) -> Chart:
    """A key row's bars: one per day, scaled to the key's own busiest day."""
    busiest = max((b["requests"] for b in series), default=0)
    span = f"{len(series)} days"
    columns = _columns(
        series,
        "day",
        left=0,
        right=SPARK_WIDTH,
        top=2,
        bottom=SPARK_HEIGHT - 2,
        scale_max=busiest,
        gap=SPARK_GAP,
        now=now,
    )
    return Chart(
        width=SPARK_WIDTH,
        height=SPARK_HEIGHT,
        top=2,
        bottom=SPARK_HEIGHT - 2,
        left=0,
        right=SPARK_WIDTH,
        columns=columns,
        y_ticks=(),
        x_ticks=(),
        title=f"Requests per day (UTC), last {span}",
        summary=_summary(series, span, "day"),
        requests=sum(b["requests"] for b in series),
        refused=sum(b["refused"] for b in series),
    )


def sparkline_svg(chart: Chart) -> SafeString:
    """A key row's bars as SVG, built here rather than in a template, which took a third of
    a key page of 50 rows (a large-tenant audit). The numbers are the chart's own floats;
    every text is escaped."""
    parts = [
        f'<svg class="spark" viewBox="0 0 {chart.width} {chart.height}" width="{chart.width}" '
        f'height="{chart.height}" role="img" aria-label="{escape(chart.title)}. '
        f'{escape(chart.summary)}" focusable="false"><line class="spark-base" x1="0" '
        f'x2="{chart.width}" y1="{chart.bottom}" y2="{chart.bottom}"/>'
    ]
    # No request in 30 days: the baseline alone. Thirty "0 requests" tooltips repeated what
    # the chart's name and the row say, 3.7 KB a row: 180 KB on a page of 50 unused keys.
    for col in () if chart.empty else chart.columns:
        parts.append(
            f'<g class="spark-column{" is-current" if col.current else ""}"><title>'
            f'{escape(col.label)}</title><rect class="spark-hit" x="{col.slot_x}" y="0" '
            f'width="{col.slot_width}" height="{chart.height}"/>'
        )
        # A day's refusals sit on its accepted bar as a cap apart from it, hatched (usage.css):
        # told from it without colour (a WCAG 1.4.1 audit), even as a 1.5-unit sliver.
        gap = SPARK_CAP_GAP if col.accepted_height else 0
        for css, y, height in (
            ("spark-bar", col.accepted_y, col.accepted_height),
            ("spark-refused", _round(col.refused_y - gap), col.refused_height),
        ):
            if height:
                parts.append(
                    f'<rect class="{css}" x="{col.x}" y="{y}" width="{col.width}" '
                    f'height="{height}"/>'
                )
        parts.append("</g>")
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 (numbers, and texts escaped above)


def bar_chart(
    series: list[Bucket], granularity: str, layout: Layout, now: datetime | None = None
) -> Chart:
    """Requests per hour or day with a y axis of round steps and labelled times."""
    left, right = layout.left, layout.width - layout.right
    top, bottom = layout.top, layout.height - layout.bottom
    busiest = max((b["requests"] for b in series), default=0)
    scale_max = nice_ceiling(busiest)
    y_ticks = tuple(
        Tick(_round(bottom - (bottom - top) * i / 4), compact(scale_max * i // 4), "end")
        for i in range(5)
    )
    slot = (right - left) / max(len(series), 1)
    x_ticks = []
    for index, bucket in enumerate(series):
        start = bucket["start"]
        if granularity == "hour":
            if start.hour % layout.hour_step:
                continue
            text = f"{start:%-d %b}" if start.hour == 0 else f"{start:%H:%M}"
        else:
            if (len(series) - 1 - index) % layout.day_step:
                continue
            text = f"{start:%-d %b}"
        position = _round(left + (index + 0.5) * slot)
        # A label near an edge hangs inward rather than past the picture.
        anchor = "end" if position > right - 16 else "start" if position < left + 16 else "middle"
        x_ticks.append(Tick(position, text, anchor))
    span = "48 hours" if granularity == "hour" else f"{len(series)} days"
    what = "hour" if granularity == "hour" else "day"
    return Chart(
        width=layout.width,
        height=layout.height,
        top=top,
        bottom=bottom,
        left=left,
        right=right,
        columns=_columns(
            series,
            granularity,
            left=left,
            right=right,
            top=top,
            bottom=bottom,
            scale_max=scale_max,
            gap=max(slot * 0.22, 1.0),
            now=now,
        ),
        y_ticks=y_ticks,
        x_ticks=tuple(x_ticks),
        title=f"Requests per {what}, last {span} (UTC)",
        summary=_summary(series, span, granularity),
        requests=sum(b["requests"] for b in series),
        refused=sum(b["refused"] for b in series),
    )
