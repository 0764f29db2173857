from datetime import timedelta

from django import template
from django.utils import dateformat, timezone
from django.utils.html import format_html

from core.timezones import label
from core.units import gib

register = template.Library()


@register.filter
def filesizeformat_mib(value) -> str:
    """Memory in one unit everywhere: GiB with one decimal (512 → '0.5 GiB', 16384 → '16.0 GiB')."""
    return gib(value)


@register.filter
def when(value, fmt: str = "Y-m-d H:i") -> str:
    """An aware datetime in the person's zone (``core.timezones``), labelled: '2026-12-02 10:15 CET'.
    ``fmt`` is a Django date format ('H:i:s' for a time of day)."""
    if not value:
        return ""
    local = timezone.localtime(value)
    return f"{dateformat.format(local, fmt)} {label(local)}"


@register.simple_tag
def zone_attributes() -> str:
    """``<body {% zone_attributes %}>``: the zone this page is rendered in, for live.js and charts.js to
    format live times the same way (its IANA name, its label and offset in minutes now)."""
    now = timezone.localtime()
    offset = int((now.utcoffset() or timedelta(0)).total_seconds() // 60)
    return format_html(
        ' data-tz="{}" data-tz-label="{}" data-tz-offset="{}"', timezone.get_current_timezone_name(), label(now), offset
    )
