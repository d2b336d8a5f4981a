"""The typed table shape shared by the SQL destinations (Airbyte's "Destinations V2" shape).

A stream's table has four columns of Airbyte's, then one column per top-level property of the
stream's JSON schema::

    _airbyte_raw_id          a random UUID per row
    _airbyte_extracted_at    the record's emitted_at (timestamp with time zone)
    _airbyte_meta            JSON: {"changes": [...], "sync_id": ...}; a change lists a field
                             whose value did not fit its column and was stored as NULL
    _airbyte_generation_id   the catalog's generation_id of the stream (0 when it has none)

Each property gets a :data:`Kind` from its schema (:func:`kind_of`), which each destination maps
to its own SQL type. Column names are normalised by :func:`column_names` (see
``docs/destinations.md``). :func:`widen` decides what happens when a stored column's kind and the
schema's disagree. :data:`CONVERTERS` turn decoded JSON values into Python values of a kind (for
destinations that load rows from Python); DuckDB does the same in SQL with the same rules.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, Literal

import msgspec
import orjson

from ferryman.builtin._catalog import ConfiguredStream

Kind = Literal[
    "integer", "number", "boolean", "string", "date", "timestamptz", "timestamp", "time", "timetz", "json"
]
AIRBYTE_COLUMNS = ("_airbyte_raw_id", "_airbyte_extracted_at", "_airbyte_meta", "_airbyte_generation_id")
# Names a property can never take: Airbyte's columns, and the one earlier versions stored records in.
RESERVED = frozenset((*AIRBYTE_COLUMNS, "_airbyte_data"))
CDC_DELETED_AT = "_ab_cdc_deleted_at"
MAX_NAME = 63  # PostgreSQL's identifier limit, in bytes; DuckDB follows it for the same tables
TYPECAST_ERROR = "DESTINATION_TYPECAST_ERROR"
SERIALIZATION_ERROR = "DESTINATION_SERIALIZATION_ERROR"
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
# The emitted_at values (ms since the epoch) that become an _airbyte_extracted_at: years 1 to
# 9999, what Python's datetime holds. Any other (a source writing microseconds, say) is NULL.
EMITTED_MS_MIN, EMITTED_MS_MAX = -62_135_596_800_000, 253_402_300_799_999

_WELL_KNOWN = {  # protocol v1's "$ref": "WellKnownTypes.json#/definitions/<name>"
    "Integer": "integer",
    "Number": "number",
    "Boolean": "boolean",
    "String": "string",
    "BinaryData": "string",
    "Date": "date",
    "TimestampWithTimezone": "timestamptz",
    "TimestampWithoutTimezone": "timestamp",
    "TimeWithTimezone": "timetz",
    "TimeWithoutTimezone": "time",
}


def kind_of(schema: Any) -> Kind:
    """The column kind of one property's JSON schema; anything unclear (unions too) is JSON."""
    if not isinstance(schema, dict):
        return "json"
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in _WELL_KNOWN:
        return _WELL_KNOWN[ref.rsplit("/", 1)[-1]]  # type: ignore[return-value]
    types = schema.get("type")
    listed = [types] if isinstance(types, str) else types if isinstance(types, list) else []
    concrete = [kind for kind in listed if kind != "null"]
    if len(concrete) != 1:
        return "json"
    airbyte_type = schema.get("airbyte_type")
    found = concrete[0]
    if found == "integer" or (found == "number" and airbyte_type == "integer"):
        return "integer"
    if found == "number":
        return "number"
    if found == "boolean":
        return "boolean"
    if found != "string":
        return "json"
    fmt = schema.get("format")
    if fmt == "date":
        return "date"
    if fmt == "date-time":
        return "timestamp" if airbyte_type == "timestamp_without_timezone" else "timestamptz"
    if fmt == "time":
        return "timetz" if airbyte_type == "time_with_timezone" else "time"
    return "string"


def widen(stored: Kind, wanted: Kind) -> Kind:
    """The kind a stored column should have when the schema now asks for ``wanted``.

    Integer widens to number; anything widens to string, and anything but string to JSON. Any
    other change keeps the stored kind: values are then loaded into it, or NULLed when they do
    not fit, so nothing stored is ever rewritten into a narrower type.
    """
    if stored == wanted or stored == "string":
        return stored
    if (stored, wanted) == ("integer", "number") or wanted in ("string", "json"):
        return wanted
    return stored


def normalise(name: str) -> str:
    """Lower case ASCII letters, digits and ``_``; see ``docs/destinations.md``."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"[^a-z0-9_]+", "_", text)
    if not text or text[0].isdigit():
        text = "_" + text
    if len(text) > MAX_NAME:
        text = f"{text[: MAX_NAME - 9]}_{_digest(name)}"
    return text


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:8]


def column_names(fields: list[str]) -> dict[str, str]:
    """Each field's column name: normalised, and unique.

    When fields collide (differ only in case or punctuation, or take a reserved name), the one
    whose name sorts first keeps the normalised name and each other gets ``_`` and eight hex
    digits of the SHA-256 of its own name appended: the same fields always get the same names.
    """
    groups: dict[str, list[str]] = {}
    for field in fields:
        groups.setdefault(normalise(field), []).append(field)
    names: dict[str, str] = {}
    for base, members in groups.items():
        for position, field in enumerate(sorted(members)):
            if position == 0 and base not in RESERVED:
                names[field] = base
            else:
                names[field] = f"{base[: MAX_NAME - 9]}_{_digest(field)}"
    return names


@dataclass(frozen=True)
class Column:
    name: str  # the SQL column
    field: str  # what _airbyte_meta calls it: the property, or a nested key's dotted path
    path: tuple[str, ...]  # where the value is inside the record's data
    kind: Kind


def _schema_at(schema: dict[str, Any], path: list[str]) -> Any:
    node: Any = schema
    for part in path:
        properties = node.get("properties") if isinstance(node, dict) else None
        node = properties.get(part) if isinstance(properties, dict) else None
    return node


def stream_columns(stream: ConfiguredStream) -> list[Column]:
    """The stream's property columns, in schema order, then one per nested primary-key field.

    A top-level primary-key field missing from the schema gets a string column.
    """
    properties = stream.json_schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    fields: dict[str, tuple[tuple[str, ...], Kind]] = {
        name: ((name,), kind_of(schema)) for name, schema in properties.items() if isinstance(name, str)
    }
    for path in stream.primary_key:
        field = ".".join(path)
        if field not in fields:
            found = _schema_at(stream.json_schema, path)
            fields[field] = (tuple(path), kind_of(found) if found is not None else "string")
    names = column_names(list(fields))
    return [Column(names[field], field, path, kind) for field, (path, kind) in fields.items()]


def key_columns(stream: ConfiguredStream, columns: list[Column]) -> list[Column]:
    by_path = {column.path: column for column in columns}
    return [by_path[tuple(path)] for path in stream.primary_key]


def cursor_column(stream: ConfiguredStream, columns: list[Column]) -> Column | None:
    """The column dedup orders by: the cursor field's, when it is a column."""
    by_path = {column.path: column for column in columns}
    return by_path.get(tuple(stream.cursor_field)) if stream.cursor_field else None


def quote(identifier: str) -> str:
    """A SQL identifier, quoted (DuckDB and PostgreSQL alike)."""
    return '"' + identifier.replace('"', '""') + '"'


def merge_statements(
    target: str, batch: str, columns: list[Column], keys: list[Column], cursor: Column | None, names: str
) -> list[str]:
    """Upsert the batch (one row per key) into the target: a stored row is replaced unless its
    cursor is later; a winning row whose CDC ``_ab_cdc_deleted_at`` is set deletes the key."""
    match = " AND ".join(f"t.{quote(c.name)} = b.{quote(c.name)}" for c in keys)
    wins = (
        ""
        if cursor is None
        else f" AND (t.{quote(cursor.name)} IS NULL OR b.{quote(cursor.name)} >= t.{quote(cursor.name)})"
    )
    keep = []
    if cursor is not None:
        keep.append(f"NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {match})")
    deleted = next((c for c in columns if c.path == (CDC_DELETED_AT,)), None)
    if deleted is not None:
        keep.append(f"b.{quote(deleted.name)} IS NULL")
    where = f" WHERE {' AND '.join(keep)}" if keep else ""
    return [
        f"DELETE FROM {target} AS t USING {batch} AS b WHERE {match}{wins}",
        f"INSERT INTO {target} ({names}) SELECT {names} FROM {batch} AS b{where} ORDER BY _ferryman_seq",
    ]


def extracted_time(emitted_ms: Any) -> datetime | None:
    """A record's ``emitted_at`` as a time, or None when it is not a number of a year 1-9999."""
    if type(emitted_ms) not in (int, float) or not EMITTED_MS_MIN <= emitted_ms <= EMITTED_MS_MAX:
        return None
    return datetime.fromtimestamp(emitted_ms / 1000, UTC)


def change(field: str, reason: str = TYPECAST_ERROR) -> dict[str, str]:
    return {"field": field, "change": "NULLED", "reason": reason}


# --- converting decoded JSON values (None: does not fit) -------------------------------------


class Unfit(Exception):
    """A value does not fit its column; ``reason`` is the _airbyte_meta reason."""

    def __init__(self, reason: str = TYPECAST_ERROR) -> None:
        super().__init__(reason)
        self.reason = reason


def _exact_float(text: str) -> float | Decimal:
    """A JSON number written with a fraction or an exponent, as a float when the float is that
    number (at most 15 significant digits, no overflow or underflow), else as a Decimal: so a
    number the float would change reaches a text or JSON column as it was written."""
    value = float(text)
    if len(text) < 17:  # a '.' or an 'e' and at most 15 digits: a double holds them
        if value - value == 0.0 and (value != 0.0 or not text.lower().split("e")[0].strip("-+0.")):
            return value
    elif repr(value) == text:  # the shortest form of a double, as most sources write floats
        return value
    return Decimal(text)


decode_exact = msgspec.json.Decoder(float_hook=_exact_float).decode
"""Decode a RECORD line with every number as it was written: integers of any size as ints,
other numbers as floats or, where a float would change them, Decimals (see :func:`_exact_float`)."""
_encode_wide = msgspec.json.Encoder(decimal_format="number").encode


def _fragment(value: Any) -> orjson.Fragment:
    if type(value) is Decimal:
        return orjson.Fragment(str(value))
    raise TypeError(type(value).__name__)


def encode_exact(value: Any) -> bytes:
    """JSON text of what :data:`decode_exact` gives, its numbers as they were written (orjson's,
    as before; msgspec's for an integer beyond 64 bits, which orjson does not take)."""
    try:
        return orjson.dumps(value, default=_fragment)
    except TypeError:
        return _encode_wide(value)


def _integer(value: Any) -> int:
    if type(value) is int and INT_MIN <= value <= INT_MAX:
        return value
    if type(value) is float and value.is_integer() and INT_MIN <= value <= INT_MAX:
        return int(value)
    if type(value) is Decimal and INT_MIN <= value <= INT_MAX and value % 1 == 0:  # in range first
        return int(value)
    raise Unfit


def _number(value: Any) -> float:
    if type(value) in (int, float, Decimal):
        try:
            found = float(value)
        except OverflowError:
            raise Unfit from None
        if found - found == 0.0:  # finite: 1e400 is no double
            return found
    raise Unfit


def _boolean(value: Any) -> bool:
    if type(value) is bool:
        return value
    raise Unfit


def _text(value: Any) -> str:
    """A string as it is, anything else as its JSON text (as DuckDB's json_extract_string)."""
    return value if type(value) is str else encode_exact(value).decode()


def _parsed(value: Any, parse: Callable[[str], Any]) -> Any:
    if type(value) is not str:
        raise Unfit
    try:
        return parse(value.strip())
    except ValueError:
        raise Unfit from None


def _timestamptz(text: str) -> datetime:
    found = datetime.fromisoformat(text)
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


def _timetz(text: str) -> time:
    found = time.fromisoformat(text)
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


CONVERTERS: dict[Kind, Callable[[Any], Any]] = {
    "integer": _integer,
    "number": _number,
    "boolean": _boolean,
    "string": _text,
    "json": lambda value: encode_exact(value).decode(),
    "date": lambda value: _parsed(value, date.fromisoformat),
    "timestamptz": lambda value: _parsed(value, _timestamptz),
    "timestamp": lambda value: _parsed(value, lambda text: datetime.fromisoformat(text).replace(tzinfo=None)),
    "time": lambda value: _parsed(value, lambda text: time.fromisoformat(text).replace(tzinfo=None)),
    "timetz": lambda value: _parsed(value, _timetz),
}
