"""Documents a user hands us (configs, state files): a JSON or YAML file, or inline JSON.

Everything that can go wrong reading one is one :class:`UserInputError` line: a file that is not
UTF-8, invalid JSON or YAML, nesting deeper than the parsers go, and YAML whose aliases expand
to far more than was written (a "billion laughs": a few hundred bytes that expand to billions of
values once anything walks them, as saving the config as JSON does).

Python's JSON reader takes ``NaN``, ``Infinity`` and numbers past a double's range (``1e999``),
and YAML has ``.nan`` and ``.inf``; none of them is JSON, and written out for a connector or the
store each became ``null``, a different config than the user gave. They are refused. A UTF-8
byte order mark (Windows editors write one) is skipped, as JSON's RFC lets a reader do.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from ferryman.errors import UserInputError
from ferryman.protocol.depth import MAX_DEPTH, nests_deeper_than

# Values (scalars, lists and objects) a YAML document may hold once its aliases are expanded.
# Configs and state files hold thousands; a billion laughs reaches this within a few levels.
MAX_EXPANDED_VALUES = 1_000_000


def load_document(text: str, what: str) -> Any:
    """A JSON or YAML file, or inline JSON; ``what`` names it in errors (``--config``, ``STATE``)."""
    try:
        document = _load(text, what)
    except RecursionError:
        raise UserInputError(f"{what}: nested too deeply to read") from None
    refuse_deep(document, what)
    _refuse_not_finite(document, what)
    return document


def load_config(text: str, what: str) -> dict[str, Any]:
    document = load_document(text, what)
    if not isinstance(document, dict):
        raise UserInputError(f"{what} must be a JSON or YAML object (key: value pairs)")
    return document


MAX_CONFIG_DEPTH = MAX_DEPTH


def refuse_deep(config: Any, what: str = "the configuration", limit: int = MAX_CONFIG_DEPTH) -> None:
    """One line for a config nested more than ``limit`` levels deep, found without recursion:
    whatever walks a config later (paths, masking, the spec check, the store) recurses, and
    Python's stack ends near 1,000 frames, well within what a JSON parser accepts."""
    if nests_deeper_than(config, limit):
        raise UserInputError(
            f"{what} nests more than {limit} levels deep; no connector's config or state does"
        )


def text_fault(document: Any, nul: bool = True) -> tuple[str, str] | None:
    """A string of ``document`` (a key or a value, walked without recursion) that a store cannot
    keep as sent, as (where, what): a lone surrogate (JSON's ``\\ud800`` escape without
    its pair: not Unicode text, which neither store can encode), or, with ``nul``, a NUL (which
    Postgres cannot keep in text or JSONB: its JSON writer would store U+FFFD instead). ``where``
    is a path of keys and indexes (``tunnel.hosts[0]``); None when every string is fine."""
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            fault = _string_fault(value, nul)
            if fault is not None:
                return where or "the top level", fault
        elif isinstance(value, dict):
            for key, child in value.items():
                path = f"{where}.{_shown_key(key)}" if where else _shown_key(key)
                fault = _string_fault(key, nul) if isinstance(key, str) else None
                if fault is not None:
                    return f"the key {path}", fault
                stack.append((child, path))
        elif isinstance(value, list):
            stack.extend((child, f"{where}[{index}]") for index, child in enumerate(value))
    return None


def _string_fault(text: str, nul: bool) -> str | None:
    if nul and "\x00" in text:
        return "a NUL character (\\u0000), which a Postgres store cannot keep"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"a lone surrogate (\\u{ord(text[exc.start]):04x}), which is not Unicode text"
    return None


def _shown_key(key: object) -> str:
    """A key as a path shows it: control characters and surrogates escaped, never raw."""
    return str(key).encode("unicode_escape", "backslashreplace").decode("ascii")


def refuse_unstorable_text(document: Any, what: str = "the configuration", nul: bool = True) -> None:
    """One line for a document holding text a store cannot keep as sent (:func:`text_fault`),
    naming where, never the value (it may be a secret). A NUL is refused on SQLite too, so that
    what a client does against one store works against the other."""
    found = text_fault(document, nul)
    if found is not None:
        where, fault = found
        raise UserInputError(f"{what} holds {fault}, at {where}: remove it")


def merged(stored: Any, sent: Any) -> Any:
    """``sent`` merged into ``stored`` as Airbyte merges a PATCH's configuration: an object sent
    where an object is stored is merged key by key; anything else sent replaces what is stored
    (arrays whole); keys not sent are kept, secrets included."""
    if not isinstance(stored, dict) or not isinstance(sent, dict):
        return sent
    return {**stored, **{key: merged(stored.get(key), value) for key, value in sent.items()}}


def _load(text: str, what: str) -> Any:
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            stripped.encode("utf-8")  # arguments that are not UTF-8 arrive with surrogates
            return strict_json(stripped)
        except UnicodeEncodeError:
            raise UserInputError(f"{what}: inline JSON is not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise UserInputError(
                f"{what}: inline JSON is not valid ({exc.msg} at column {exc.colno})"
            ) from None
    path = Path(text).expanduser()
    if not path.is_file():
        raise UserInputError(f"{what}: {text!r} is neither a file nor inline JSON")
    raw = _utf8(path.read_bytes(), path, what).removeprefix("\ufeff")
    if path.suffix.lower() not in (".yaml", ".yml"):
        try:
            return strict_json(raw)
        except json.JSONDecodeError as exc:
            raise _invalid(exc, path, what, "JSON") from None
    import yaml  # here, not at the top: ~10 ms on every command, and only YAML files need it

    try:
        document = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise _invalid(exc, path, what, "YAML") from None
    _refuse_expansion(document, f"{what}: {path}")
    return document


class _NotJsonNumber(ValueError):
    pass


def _not_a_number(word: str) -> Any:
    raise _NotJsonNumber(f"{word} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NotJsonNumber(f"{text} is beyond the range of a JSON number (a double)")
    return value


def strict_json(text: str) -> Any:
    """Strict JSON: a ``NaN``, ``Infinity`` or ``1e999`` raises JSONDecodeError naming it."""
    try:
        return json.loads(text, parse_constant=_not_a_number, parse_float=_finite)
    except _NotJsonNumber as exc:
        # json reports no position for a value its hooks refuse: it is where the word first
        # stands as a value of its own (json reads in order, and refused the first it met).
        word = str(exc).split(" ", 1)[0]
        raise json.JSONDecodeError(str(exc), text, _bare_token_at(text, word)) from None


# A JSON string (its escapes included), or a run of characters a bare value is made of.
_STRING_OR_BARE = re.compile(r'"(?:[^"\\]|\\.)*"|[\w.+-]+', re.DOTALL)


def _bare_token_at(text: str, word: str) -> int:
    """Where ``word`` first stands alone outside a string (not ``"NaN"``, not a key, not part of
    ``1e9999``); 0 when it does not."""
    for token in _STRING_OR_BARE.finditer(text):
        if token.group() == word:
            return token.start()
    return 0


def _refuse_not_finite(document: Any, what: str) -> None:
    """One line for a NaN or infinity a YAML document holds (``.nan``, ``.inf``); JSON's are
    refused as they are read. Walked without recursion: the depth was checked before."""
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise UserInputError(f"{what} holds {value}, which is not a JSON number: write a number, or null")
        if isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)


def _invalid(exc: Exception, path: Path, what: str, kind: str) -> UserInputError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return UserInputError(f"{what}: {path} is not valid {kind} ({first})")


def _utf8(data: bytes, path: Path, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(
            f"{what}: {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None


def _refuse_expansion(document: Any, where: str) -> None:
    """Refuse a YAML document that refers to itself or expands beyond MAX_EXPANDED_VALUES.

    The loader shares one object per anchor, so loading is cheap; the cost comes when the
    document is walked. Sizes are memoised per shared object, so this walk costs what was
    written, not what it expands to."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(value: Any) -> int:
        if not isinstance(value, dict | list):
            return 1
        key = id(value)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise UserInputError(f"{where} refers to itself (a YAML alias inside its own anchor)")
        open_.add(key)
        total = 1
        for child in value.values() if isinstance(value, dict) else value:
            total += size(child)
            if total > MAX_EXPANDED_VALUES:
                raise UserInputError(
                    f"{where} expands to more than {MAX_EXPANDED_VALUES:,} values through its aliases "
                    "(a 'billion laughs'?): refused"
                )
        open_.discard(key)
        sizes[key] = total
        return total

    size(document)
