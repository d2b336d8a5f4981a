"""What reaches a person's terminal: text from connectors and users, shown as it is and harmless.

Stream names, failure messages, LOG lines and names come from connectors and users. On a terminal
two things in them could act instead of being read:

- rich markup (``[bold]``, ``[/]``) and emoji codes (``:smile:``), which rich interprets in any
  string it prints: a stream named ``us[/]ers`` was a ``MarkupError`` traceback;
- control characters: ESC starts sequences that set the window title, clear the screen or move
  the cursor; other C0 and C1 controls and the bidirectional overrides (U+202E) reorder or hide
  what is printed.

So the consoles of :mod:`ferryman.cli.common` print every string as plain text (no markup, no
emoji) with its control characters made visible (:func:`visible`); colour comes only from styles
set in code (:func:`plain` with a style, ``Text.assemble``). A rich ``Text`` does not pass through
the console's string rendering: make it with :func:`plain` when it holds such text.

Rich is imported inside the functions that need it: a command that prints JSON never loads it.
"""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, Any

from ferryman.printable import CONTROLS, visible

if TYPE_CHECKING:
    from rich.console import Console
    from rich.style import Style
    from rich.text import Text


def _shown_in_json(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def plain(text: object, style: str | Style = "", **options: Any) -> Text:
    """``text`` (``str()`` of it) as a rich ``Text`` that is printed as it reads: no markup,
    control characters visible; ``options`` as ``Text``'s (``no_wrap``, ``overflow``)."""
    from rich.text import Text

    return Text(visible(str(text)), style=style, **options)


def json_view(document: Any) -> Text:
    """``document`` as indented, highlighted JSON for people (``spec``, ``sources show``): what
    JSON leaves unescaped in strings (DEL, C1 controls, bidi overrides) written as ``\\uXXXX``,
    so it is still valid JSON."""
    import json

    from rich.highlighter import JSONHighlighter

    text = json.dumps(document, indent=2, ensure_ascii=False, default=str)
    view = JSONHighlighter()(CONTROLS.sub(_shown_in_json, text))
    view.no_wrap = True
    view.overflow = None
    return view


@cache
def console_class() -> type[Console]:
    """A rich ``Console`` whose strings are plain text with control characters visible,
    whatever a caller asks (``markup=True`` included)."""
    from rich.console import Console

    class PlainConsole(Console):
        def __init__(self, **options: Any) -> None:
            super().__init__(markup=False, emoji=False, **options)

        def render_str(self, text: str, **options: Any) -> Text:
            # Every string a console prints comes through here: print()'s arguments, table
            # cells and titles, a live display's content.
            options.update(markup=False, emoji=False)
            return super().render_str(visible(text), **options)

    return PlainConsole
