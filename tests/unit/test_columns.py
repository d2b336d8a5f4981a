"""The typed table shape: column kinds, column names, widening, and the values that do not fit."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import pytest

from ferryman.builtin._catalog import ConfiguredStream
from ferryman.builtin._columns import (
    CONVERTERS,
    Unfit,
    column_names,
    kind_of,
    normalise,
    stream_columns,
    widen,
)


@pytest.mark.parametrize(
    ("schema", "kind"),
    [
        ({"type": "integer"}, "integer"),
        ({"type": ["null", "integer"]}, "integer"),
        ({"type": "number", "airbyte_type": "integer"}, "integer"),
        ({"type": "number"}, "number"),
        ({"type": "boolean"}, "boolean"),
        ({"type": "string"}, "string"),
        ({"type": "string", "format": "date"}, "date"),
        ({"type": "string", "format": "date-time"}, "timestamptz"),
        ({"type": "string", "format": "date-time", "airbyte_type": "timestamp_with_timezone"}, "timestamptz"),
        (
            {"type": "string", "format": "date-time", "airbyte_type": "timestamp_without_timezone"},
            "timestamp",
        ),
        ({"type": "string", "format": "time"}, "time"),
        ({"type": "string", "format": "time", "airbyte_type": "time_with_timezone"}, "timetz"),
        ({"$ref": "WellKnownTypes.json#/definitions/Integer"}, "integer"),
        ({"type": "object", "properties": {}}, "json"),
        ({"type": "array"}, "json"),
        ({"type": ["string", "integer"]}, "json"),
        ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "json"),
        ({}, "json"),
        ("nonsense", "json"),
    ],
)
def test_a_property_schema_gives_its_column_kind(schema: Any, kind: str) -> None:
    assert kind_of(schema) == kind


@pytest.mark.parametrize(
    ("name", "column"),
    [
        ("name", "name"),
        ("userName", "username"),
        ("first name", "first_name"),
        ("Prénom", "prenom"),
        ("2fa", "_2fa"),
        ("a.b-c", "a_b_c"),
        ("", "_"),
        ("x" * 80, "x" * 54 + "_" + "c9a9a1a6"),
    ],
)
def test_names_sql_cannot_take_as_they_are_are_normalised(name: str, column: str) -> None:
    if len(name) > 63:
        assert normalise(name)[:55] == "x" * 54 + "_" and len(normalise(name)) == 63
    else:
        assert normalise(name) == column


def test_colliding_names_stay_apart_and_stable() -> None:
    names = column_names(["Name", "name", "NAME", "_airbyte_meta", "id"])
    assert names["NAME"] == "name"  # sorts first
    assert names["Name"].startswith("name_") and names["name"].startswith("name_")
    assert len(set(names.values())) == 5
    assert names["_airbyte_meta"].startswith("_airbyte_meta_")
    assert column_names(["id", "name", "Name", "NAME", "_airbyte_meta"]) == names  # order does not matter


def test_a_nested_primary_key_gets_its_own_column() -> None:
    schema = {"properties": {"id": {"type": "object", "properties": {"n": {"type": "integer"}}}}}
    stream = ConfiguredStream("s", json_schema=schema, primary_key=[["id", "n"]])
    columns = [(c.name, c.field, c.kind) for c in stream_columns(stream)]
    assert columns == [("id", "id", "json"), ("id_n", "id.n", "integer")]


@pytest.mark.parametrize(
    ("stored", "wanted", "kept"),
    [
        ("integer", "number", "number"),
        ("number", "integer", "number"),
        ("integer", "string", "string"),
        ("boolean", "json", "json"),
        ("string", "json", "string"),
        ("string", "integer", "string"),
        ("date", "timestamptz", "date"),
    ],
)
def test_widening_never_narrows(stored: Any, wanted: Any, kept: str) -> None:
    assert widen(stored, wanted) == kept


@pytest.mark.parametrize(
    ("kind", "value", "stored"),
    [
        ("integer", 7, 7),
        ("integer", 7.0, 7),
        ("number", 7, 7.0),
        ("boolean", False, False),
        ("string", "x", "x"),
        ("string", 12, "12"),
        ("string", {"a": 1}, '{"a":1}'),
        ("json", [1, "a"], '[1,"a"]'),
        ("date", "2024-01-31", date(2024, 1, 31)),
        ("timestamptz", "2024-01-01T10:00:00+02:00", datetime(2024, 1, 1, 8, tzinfo=UTC)),
        ("timestamptz", "2024-01-01T10:00:00", datetime(2024, 1, 1, 10, tzinfo=UTC)),
        ("timestamp", "2024-01-01T10:00:00+02:00", datetime(2024, 1, 1, 10)),
        ("time", "10:30:00", time(10, 30)),
    ],
)
def test_values_that_fit(kind: Any, value: Any, stored: Any) -> None:
    converted = CONVERTERS[kind](value)
    assert converted == stored
    if isinstance(stored, datetime) and stored.tzinfo is not None:
        assert converted.tzinfo is not None  # the same instant, never a wall clock


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("integer", 1.5),
        ("integer", "7"),
        ("integer", True),
        ("integer", 2**63),
        ("number", "1.5"),
        ("number", 10**400),
        ("boolean", "true"),
        ("date", "2024-02-30"),
        ("date", 20240101),
        ("timestamptz", "yesterday"),
    ],
)
def test_values_that_do_not_fit(kind: Any, value: Any) -> None:
    with pytest.raises(Unfit):
        CONVERTERS[kind](value)
