"""`{{ chart|sparkline_svg }}`: a key row's 30-day bars (`apps.apikeys.charts`)."""

from __future__ import annotations

from django import template

from apps.apikeys import charts

register = template.Library()

register.filter("sparkline_svg", charts.sparkline_svg)
