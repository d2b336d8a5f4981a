"""Control characters written out, for text from connectors and clients that reaches a terminal
or a log a person reads: ESC as ``\\x1b``, a right-to-left override as ``\\u202e``.

ESC starts sequences that set a terminal's title, clear its screen or move its cursor; the other
C0 and C1 controls and the bidirectional marks reorder or hide what is printed. Shared by the
CLI's consoles (:mod:`ferryman.cli.terminal`) and the server's access log.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls; the Unicode bidirectional marks, embeddings,
# overrides and isolates (U+061C, U+200E-F, U+202A-E, U+2066-9); the line and paragraph separators.
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with each control character written out as its escape: ESC as ``\\x1b``, a
    right-to-left override as ``\\u202e`` (tab and newline stay)."""
    return CONTROLS.sub(_shown, text)
