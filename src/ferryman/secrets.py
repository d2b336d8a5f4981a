"""Secrets in connector configs, and the one place where they are masked.

Pure helpers. Two kinds of masking, with different rules (docs/secrets.md has the table):

* **Structured**: a config shown to people has its secret *fields* replaced by ``MASK``. A field
  is secret when the connector's spec (or a declarative manifest's own spec, carried in the
  config) marks it ``airbyte_secret``, whatever its value (a string, a number, an array, an
  object); or when its name looks like a credential (``password``, ``token``, ...) and its value
  is a string that is not one of the spec's ``enum``/``const`` options.
* **Text**: log lines, failure messages and outputs have secret *values* replaced wherever they
  occur, with their encoded forms (JSON-escaped, Python repr, URL-encoded, base64). Only values
  that are plausibly secret are replaced by text: at least ``MIN_TEXT_CHARS`` long, not a number,
  not a common word, not an option of the spec. Otherwise every ``True`` or ``100`` in a log would
  be masked because ``use_auth`` is true or ``max_tokens`` is 100.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "**********"
MIN_TEXT_CHARS = 6  # shorter values are masked in a config's fields, never by text replacement
MIN_NUMBER_CHARS = 10  # a value that reads as a number is text-masked only from this length
MIN_BASE64_CHARS = 8  # the shortest base64 fragment worth masking (shorter ones are noise)
MANIFEST_KEY = "__injected_declarative_manifest"

_SECRET_NAME = re.compile(
    r"(pass(word|phrase)?|secret|token|api[_-]?key|private[_-]?key|credential|access[_-]?key|auth)",
    re.IGNORECASE,
)
# Names that look like credentials but hold a choice or a place, never a secret.
_NOT_SECRET_NAME = re.compile(r"(type|method|mode|kind|url|uri|endpoint|expires?(_at|_in)?)$", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?[0-9]+([.,][0-9]+)*")
# Values a credential-named field often holds that are labels, not secrets.
_COMMON_WORDS = frozenset(
    {"true", "false", "null", "none", "yes", "no", "password", "passphrase", "secret", "token",
     "api_key", "apikey", "bearer", "basic", "oauth", "oauth2", "oauth2.0", "private_key",
     "access_token", "refresh_token", "client_credentials", "username", "default", "enabled",
     "disabled"}
)  # fmt: skip


@dataclass(frozen=True)
class SecretRules:
    """What is secret in one config: ``keys`` the spec marks (None: no spec known, names alone
    decide), ``options`` the spec's enum/const strings (labels, never secrets)."""

    keys: frozenset[str] | None = None
    options: frozenset[str] = frozenset()

    @classmethod
    def of(cls, spec: dict[str, Any] | None, config: Any = None) -> SecretRules:
        """The rules of a connector's spec, plus those of a declarative manifest in ``config``
        (``airbyte-source-declarative-manifest`` reads its real spec from the config)."""
        schemas = [_connection_schema(spec)] if spec else []
        manifest = _manifest_schema(config)
        if manifest is not None:
            schemas.append(manifest)
        if not schemas:
            return cls()
        keys = frozenset(k for schema in schemas for k in _secret_keys(schema))
        options = frozenset(o for schema in schemas for o in _options(schema))
        return cls(keys, options)

    def marked(self, key: str) -> bool:
        return self.keys is not None and key in self.keys

    def guessed(self, key: str, value: Any) -> bool:
        """A credential-like name on a string value that is not a spec option."""
        return (
            isinstance(value, str)
            and bool(_SECRET_NAME.search(key))
            and not _NOT_SECRET_NAME.search(key)
            and value not in self.options
        )


def _connection_schema(spec: dict[str, Any]) -> Any:
    return spec.get("connectionSpecification") or spec.get("connection_specification") or spec


def _manifest_schema(config: Any) -> Any:
    manifest = config.get(MANIFEST_KEY) if isinstance(config, dict) else None
    spec = manifest.get("spec") if isinstance(manifest, dict) else None
    return _connection_schema(spec) if isinstance(spec, dict) else None


def _schemas(schema: Any) -> Iterator[dict[str, Any]]:
    """Every sub-schema: under properties, oneOf/anyOf/allOf, items, and anything else nested."""
    if isinstance(schema, dict):
        yield schema
        for value in schema.values():
            yield from _schemas(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _schemas(item)


def _secret_keys(schema: Any) -> Iterator[str]:
    for node in _schemas(schema):
        properties = node.get("properties")
        if isinstance(properties, dict):
            for name, prop in properties.items():
                if isinstance(prop, dict) and prop.get("airbyte_secret") is True:
                    yield str(name)


def _options(schema: Any) -> Iterator[str]:
    for node in _schemas(schema):
        if isinstance(node.get("const"), str):
            yield node["const"]
        if isinstance(node.get("enum"), list):
            yield from (str(option) for option in node["enum"] if isinstance(option, str))


def secret_keys(spec: dict[str, Any] | None) -> set[str]:
    """Property names the spec marks airbyte_secret anywhere (oneOf/anyOf branches, items...)."""
    return set(_secret_keys(_connection_schema(spec))) if spec else set()


# -- structured: a config with its secret fields masked ----------------------------------------


def mask_config(config: Any, rules: SecretRules) -> Any:
    """The config with every secret field's value replaced by MASK (a marked array or object
    whole); nothing else changed."""
    if isinstance(config, list):
        return [mask_config(item, rules) for item in config]
    if not isinstance(config, dict):
        return config
    masked: dict[str, Any] = {}
    for key, value in config.items():
        if (rules.marked(str(key)) and value is not None) or rules.guessed(str(key), value):
            masked[key] = MASK
        elif isinstance(value, list) and _SECRET_NAME.search(str(key)):
            masked[key] = [MASK if rules.guessed(str(key), v) else mask_config(v, rules) for v in value]
        else:
            masked[key] = mask_config(value, rules)
    return masked


# -- text: the values to replace wherever they occur ------------------------------------------


def _leaves(value: Any) -> Iterator[str]:
    """Every scalar in a value as text (booleans and None carry no secret)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        yield str(value)


def _secret_leaves(config: Any, rules: SecretRules) -> Iterator[str]:
    if isinstance(config, list):
        for item in config:
            yield from _secret_leaves(item, rules)
    elif isinstance(config, dict):
        for key, value in config.items():
            if rules.marked(str(key)):
                yield from _leaves(value)
            elif rules.guessed(str(key), value):
                yield value
            elif isinstance(value, list) and _SECRET_NAME.search(str(key)):
                yield from (v for v in value if rules.guessed(str(key), v))
                yield from _secret_leaves([v for v in value if not isinstance(v, str)], rules)
            else:
                yield from _secret_leaves(value, rules)


def plausible_secret(value: str, rules: SecretRules) -> bool:
    """Worth replacing wherever it occurs in text: long enough, not a number, not a label."""
    text = value.strip()
    if len(text) < MIN_TEXT_CHARS or text.lower() in _COMMON_WORDS or value in rules.options:
        return False
    return not (_NUMBER.fullmatch(text) and len(text) < MIN_NUMBER_CHARS)


def secret_values(config: Any, rules: SecretRules) -> list[str]:
    """The values of a config to mask in text, longest first (a secret containing another is
    masked whole)."""
    found = {v for v in _secret_leaves(config, rules) if plausible_secret(v, rules)}
    return longest_first(found)


def longest_first(values: Iterable[str]) -> list[str]:
    return sorted(set(values), key=lambda v: (-len(v), v))


def encoded_forms(value: str) -> set[str]:
    """The ways a value shows up in text a connector writes: as is, each line of a multi-line
    value, JSON-escaped (ASCII and not, once and twice), as a Python repr, URL-encoded, and
    base64 (standard and URL-safe, at each of the three byte alignments inside longer data)."""
    once = json.dumps(value)[1:-1]
    forms = {
        value,
        once,
        json.dumps(value, ensure_ascii=False)[1:-1],
        re.sub(r"\\u([0-9a-f]{4})", lambda m: "\\u" + m.group(1).upper(), once),
        json.dumps(once)[1:-1],
        repr(value)[1:-1],
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        *value.splitlines(),
        *_base64_forms(value.encode()),
    }
    return {form for form in forms if len(form.strip()) >= MIN_TEXT_CHARS}


def _base64_forms(raw: bytes) -> Iterator[str]:
    yield base64.b64encode(raw).decode()
    yield base64.urlsafe_b64encode(raw).decode()
    for offset, skip in ((0, 0), (1, 2), (2, 3)):
        # Inside longer data (``user:password`` in a Basic header) the value starts at any byte
        # of a 3-byte group: keep only the characters that depend on the value's bytes alone.
        encoded = base64.b64encode(b"\0" * offset + raw).decode().rstrip("=")
        partial = (offset + len(raw)) % 3
        core = encoded[skip : len(encoded) - (1 if partial else 0)]
        if len(core) >= MIN_BASE64_CHARS:
            yield core
            yield core.replace("+", "-").replace("/", "_")


@lru_cache(maxsize=64)
def _forms(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(longest_first(form for value in values for form in encoded_forms(value)))


# Characters some JSON encoders escape and others do not: Gson writes ``=`` as ``\u003d`` (and
# ``<>&'``), Go ``<>&``, PHP ``/`` as ``\/``; most write non-ASCII either way.
_OPTIONALLY_ESCAPED = frozenset("/<>&='")
_SHORT_ESCAPES = {
    '"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"
}  # fmt: skip
MAX_JSON_CHARS_PER_CHAR = 12  # a character outside the BMP as two escapes of 6 characters


def _json_pattern(value: str) -> str | None:
    r"""A regex matching ``value`` JSON-escaped by any encoder (each character as itself where
    JSON allows, as its short escape, or as ``\uXXXX`` in either case), when the fixed forms of
    :func:`encoded_forms` do not already cover every such encoding; else None."""
    if value.isascii() and not _OPTIONALLY_ESCAPED.intersection(value):
        return None
    parts = []
    for char in value:
        code = ord(char)
        if char.isascii() and char.isalnum():
            parts.append(char)
            continue
        choices = [re.escape(_SHORT_ESCAPES[char])] if char in _SHORT_ESCAPES else []
        if code >= 0x20 and char not in '"\\':
            choices.append(re.escape(char))
        units = [code] if code < 0x10000 else [0xD800 + ((code - 0x10000) >> 10), 0xDC00 + (code & 0x3FF)]
        choices.append("".join(r"\\u" + "".join(map(_any_case, f"{unit:04x}")) for unit in units))
        parts.append("(?:" + "|".join(choices) + ")")
    return "".join(parts)


def _any_case(digit: str) -> str:
    return f"[{digit}{digit.upper()}]" if digit.isalpha() else digit


@lru_cache(maxsize=64)
def _pattern(values: tuple[str, ...]) -> re.Pattern[str] | None:
    forms = _forms(values)
    extra = [regex for value in values if (regex := _json_pattern(value)) is not None]
    return re.compile("|".join([*map(re.escape, forms), *extra])) if forms else None


def mask_text(text: str, values: Iterable[str]) -> str:
    """``text`` with each of the ``values`` (see :func:`secret_values`) and its encoded forms
    replaced by MASK."""
    pattern = _pattern(tuple(values))
    return text if pattern is None else pattern.sub(MASK, text)


def mask_head(text: str, keep: int, values: Iterable[str]) -> str:
    """The first ``keep`` characters of ``text`` (a line too long to keep whole), masked as
    :func:`mask_text` would mask the whole: a secret the cut runs through is masked in full, and
    so is a kept end that begins one (``text`` may itself be cut short of the secret's end).
    At most ``MIN_CUT_CHARS`` - 1 of a secret's first characters can end the kept part."""
    values = tuple(values)
    pattern = _pattern(values)
    if pattern is None:
        return text[:keep]
    if len(text) <= keep:  # nothing cut
        return pattern.sub(MASK, text)
    forms = _forms(values)
    longest = max(len(forms[0]), MAX_JSON_CHARS_PER_CHAR * max(map(len, values)))
    text = text[: keep + longest]  # no need to search further: no form is longer
    kept: list[str] = []
    end = 0
    for match in pattern.finditer(text):
        if match.start() >= keep:
            break
        kept += [text[end : match.start()], MASK]
        end = match.end()
    if end >= keep:  # the cut ran through a secret: the mask ends the line
        return "".join(kept)
    rest = text[end:keep]
    begun = max((_begun(rest, form) for form in forms), default=0)
    return "".join(kept) + (rest[: len(rest) - begun] + MASK if begun else rest)


MIN_CUT_CHARS = 3  # a kept end this long that begins a secret is masked at a cut


def _begun(text: str, form: str) -> int:
    """How many of ``form``'s first characters end ``text`` (0 if fewer than MIN_CUT_CHARS)."""
    start = max(0, len(text) - len(form) + 1)
    while (start := text.find(form[:MIN_CUT_CHARS], start)) >= 0:
        if form.startswith(text[start:]):
            return len(text) - start
        start += 1
    return 0


def mask_strings(document: Any, values: list[str]) -> Any:
    """Every string inside a JSON-like document with the secret ``values`` masked."""
    if not values:
        return document
    if isinstance(document, str):
        return mask_text(document, values)
    if isinstance(document, dict):
        return {key: mask_strings(value, values) for key, value in document.items()}
    if isinstance(document, list):
        return [mask_strings(value, values) for value in document]
    return document
