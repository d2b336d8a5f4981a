"""Template filters: times (as ``<time>`` elements the page's script shows in the browser's time
zone), durations, byte sizes, counts, and names set apart from the text around them."""

from __future__ import annotations

from datetime import UTC, datetime

import jinja2
from markupsafe import Markup, escape

from ferryman.views import aware

DASH = "\u2013"  # an en dash: nothing to show


def moment(value: datetime | None) -> Markup:
    """``<time datetime="...Z">`` with UTC text, which static/app.js rewrites to local time."""
    if value is None:
        return Markup("&ndash;")
    utc = aware(value).astimezone(UTC)
    stamp = utc.isoformat(timespec="seconds").replace("+00:00", "Z")
    shown = utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{}">{}</time>').format(stamp, shown)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{seconds:.1f}s" if seconds < 10 else f"{secs}s"


def size(count: int | None) -> str:
    if count is None:
        return DASH
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} B"


def number(count: int | None) -> str:
    return DASH if count is None else f"{count:,}"


def status(value: object) -> Markup:
    """A status as a badge people can tell apart without colour (the word is always there)."""
    text = str(value)
    return Markup('<span class="badge badge-{}">{}</span>').format(escape(text), text)


def isolated(value: object) -> Markup:
    """A name people typed, in ``<bdi>``: a right-to-left name (or one holding a direction
    override) takes the text around it along (``שלום → עולם`` read as going the other way)."""
    return Markup("<bdi>{}</bdi>").format(value)


def install(env: jinja2.Environment) -> None:
    env.filters.update(
        moment=moment, duration=duration, size=size, number=number, status=status, isolated=isolated
    )
