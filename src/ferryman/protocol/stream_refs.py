"""Naming a stream: Airbyte identifies one by (namespace, name), and two namespaces may both
have a ``users`` (a Postgres source's ``public.users`` and ``crm.users``).

A user writes a stream as listings show it (:func:`label`): ``namespace.name``, or ``name`` for a
stream without a namespace. Written text is matched against the catalog, so dots need no
escaping when only one stream fits:

=====================  ==============================================================
``users``              the stream named ``users``, whatever its namespace, when only one
                       stream has that name
``crm.users``          ``users`` in namespace ``crm`` (or a stream named ``crm.users``)
``"crm"."users"``      exactly ``users`` in namespace ``crm`` (quotes as in SQL: ``""``
                       is a quote inside a quoted part)
``"users"``            exactly the ``users`` without a namespace
``"my.schema".users``  quoting one part is enough
=====================  ==============================================================

Quote a name that holds ``,`` (``--streams`` separates streams with it), ``:`` (``--stream``
puts the mode after it), ``=`` (``--cursor``, ``--primary-key``) or a quote. Text that fits more
than one stream is refused, with each candidate written in a form that fits it alone
(:func:`written`), never resolved by a guess.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ferryman.errors import UserInputError

StreamKey = tuple[str | None, str]  # (namespace, name), as Airbyte's StreamDescriptor
SPECIAL = '",:='  # a quote, and what separates a stream from what follows it on the command line


@dataclass(frozen=True)
class StreamRef:
    """A stream as a user named it: exactly (``namespace``, ``name``) when ``exact``; otherwise
    ``name`` is matched against each stream's name and, when ``dotted``, its ``namespace.name``."""

    name: str
    namespace: str | None = None
    exact: bool = False
    dotted: bool = False
    else_by_name: bool = False  # exact, but when no stream fits exactly, ``name`` in any namespace

    @classmethod
    def named(cls, name: str, namespace: str | None = None, exact: bool = False) -> StreamRef:
        """A name (as the API sends it), in ``namespace`` when one is given or ``exact``."""
        return cls(name, namespace, exact or namespace is not None)

    @classmethod
    def null_namespace(cls, name: str) -> StreamRef:
        """The API's ``"namespace": null``: the stream without a namespace; when there is none,
        the name alone (clients that send every field as null mean no more than an absent one)."""
        return cls(name, None, exact=True, else_by_name=True)

    @classmethod
    def parse(cls, text: str) -> StreamRef:
        """A stream as written on the command line (see the module's table)."""
        text = text.strip()
        if '"' not in text:
            if not text:
                raise UserInputError("a stream name is empty: write NAME or NAMESPACE.NAME")
            return cls(text, dotted=True)
        parts, rest = [], text
        while True:
            part, rest = _part(rest, text)
            parts.append(part)
            if not rest:
                break
            if not rest.startswith(".") or len(parts) == 2:
                raise UserInputError(f'stream {text!r}: expected NAME, NAMESPACE.NAME or "NAMESPACE"."NAME"')
            rest = rest[1:]
        if len(parts) == 1:
            return cls(parts[0], None, exact=True)
        return cls(parts[1], parts[0], exact=True)

    def __str__(self) -> str:
        if not self.exact or self.else_by_name:
            return self.name
        return _quoted(self.name) if self.namespace is None else f"{self.namespace}.{self.name}"


def _part(rest: str, text: str) -> tuple[str, str]:
    """One part of a reference (quoted, or up to the next dot) and what follows it."""
    if not rest.startswith('"'):
        plain, dot, after = rest.partition(".")
        if not plain or '"' in plain:
            raise UserInputError(f'stream {text!r}: expected NAME, NAMESPACE.NAME or "NAMESPACE"."NAME"')
        return plain, dot + after
    chars, i = [], 1
    while i < len(rest):
        if rest[i] == '"':
            if rest[i + 1 : i + 2] == '"':
                chars.append('"')
                i += 2
                continue
            return "".join(chars), rest[i + 1 :]
        chars.append(rest[i])
        i += 1
    raise UserInputError(f"stream {text!r}: a quote is not closed")


def _quoted(part: str) -> str:
    return '"' + part.replace('"', '""') + '"'


def key(stream: dict[str, Any]) -> StreamKey:
    return stream.get("namespace"), stream["name"]


def label(namespace: str | None, name: str) -> str:
    """A stream as listings show it: ``namespace.name``, or ``name`` without a namespace."""
    return name if namespace is None else f"{namespace}.{name}"


def written(stream: dict[str, Any], among: list[dict[str, Any]]) -> str:
    """How to write ``stream`` so that it fits no other stream of ``among``: its label when that
    is enough, else quoted."""
    return _Index(among).written(stream)


class _Index:
    """The streams by name and by ``namespace.name``: resolving a thousand names among ten
    thousand streams must not compare each with each."""

    def __init__(self, streams: list[dict[str, Any]]) -> None:
        self.streams = streams
        self.by_key = {key(s): s for s in streams}
        self.by_text: dict[str, list[StreamKey]] = {}
        for stream in streams:
            namespace, name = key(stream)
            self.by_text.setdefault(name, []).append((namespace, name))
            if namespace is not None:
                self.by_text.setdefault(f"{namespace}.{name}", []).append((namespace, name))

    def fitting(self, ref: StreamRef) -> list[StreamKey]:
        if ref.exact:
            found = [(ref.namespace, ref.name)] if (ref.namespace, ref.name) in self.by_key else []
            if found or not ref.else_by_name:
                return found
        keys = dict.fromkeys(k for k in self.by_text.get(ref.name, []) if ref.dotted or k[1] == ref.name)
        return list(keys)

    def written(self, stream: dict[str, Any]) -> str:
        namespace, name = key(stream)
        plain = label(namespace, name)
        typeable = plain == plain.strip() and not any(char in plain for char in SPECIAL)
        if typeable and len(set(self.by_text.get(plain, []))) == 1:
            return plain
        return _quoted(name) if namespace is None else f"{_quoted(namespace)}.{_quoted(name)}"


def resolve(refs: Iterable[StreamRef], streams: list[dict[str, Any]], offered_by: str) -> list[StreamKey]:
    """The stream each reference names, in order; unknown, ambiguous or repeated ones are
    refused in one line that says what to write instead. ``offered_by`` starts the list of the
    streams there are: "the source offers" reads "the source offers a, b" or "... no streams"."""
    index = _Index(streams)
    found: dict[StreamKey, None] = {}
    unknown = []
    for ref in refs:
        fitting = index.fitting(ref)
        if not fitting:
            unknown.append(str(ref))
            continue
        if len(fitting) > 1:
            candidates = ", ".join(index.written(index.by_key[k]) for k in fitting)
            how = "with its namespace" if len({k[1] for k in fitting}) == 1 else "as written here"
            raise UserInputError(
                f"stream {str(ref)!r} is ambiguous: it could be {candidates}; name one {how}"
            )
        if fitting[0] in found:
            raise UserInputError(f"stream {str(ref)!r} is named twice: name each stream once")
        found[fitting[0]] = None
    if unknown:
        offered = _listed(sorted(index.written(s) for s in streams)) or "no streams"
        raise UserInputError(f"unknown stream(s) {_listed(unknown)}: {offered_by} {offered}")
    return list(found)


LISTED_AT_MOST = 20


def _listed(names: list[str]) -> str:
    """Names for an error line: a source of ten thousand tables must not make it a page."""
    if len(names) <= LISTED_AT_MOST:
        return ", ".join(names)
    return ", ".join(names[:LISTED_AT_MOST]) + f" and {len(names) - LISTED_AT_MOST} more"


def split_written(text: str, separators: str) -> list[str]:
    """``text`` cut at each of ``separators`` that is not inside double quotes: a written stream
    may hold a separator (``,`` in a list, ``:`` before a mode) when quoted."""
    pieces: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted  # a doubled quote toggles twice: still inside
        if char in separators and not quoted:
            pieces.append("".join(current))
            current = []
            continue
        current.append(char)
    pieces.append("".join(current))
    return pieces
