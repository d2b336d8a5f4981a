"""A RECORD holding a lone UTF-16 surrogate escape (``"\\ud800"``: JSON by the grammar, read by
Python's json and Jackson) synced into each built-in destination with ``ferryman sync``: a real
source process, the worker, a real destination process and its real storage.

The worker forwards such a record and counts it; before, every built-in destination but devnull
read its input with msgspec, which refuses the escape, and skipped the record unread: the sync
said 2 records committed and 1 was stored. Now what is committed is what is stored:
destination-jsonl keeps the escape as written; DuckDB and PostgreSQL, which cannot hold it, store
the record with each column holding one NULL and listed in ``_airbyte_meta`` (see
docs/destinations.md, "Values that do not fit")."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import scripted_source
from tests.contract.destination_support import (
    DuckDBTarget,
    JsonlTarget,
    PostgresTarget,
    Target,
    pg_database,  # noqa: F401 (a fixture)
)
from tests.e2e.test_cli_jobs import Cli

SCHEMA = {
    "id": {"type": "integer"},
    "v": {"type": "string"},
    "o": {"type": "object"},
    "w": {"type": "string"},
}
CATALOG = {
    "streams": [
        {
            "name": "users",
            "json_schema": {"type": "object", "properties": SCHEMA},
            "supported_sync_modes": ["full_refresh", "incremental"],
        }
    ]
}
# As text: json.dumps would not write a lone surrogate escape. "extra" is no column of the table.
ODD_DATA = '{"id":1,"v":"a\\ud800b","o":{"k":"\\udc00","n":1.50},"w":"fine \\ud83d\\ude00","extra":"\\ud800"}'
NORMAL_DATA = '{"id":2,"v":"b","o":{"k":"c"},"w":"x"}'
SOURCE_CHANGE = {"field": "z", "change": "TRUNCATED", "reason": "SOURCE_FIELD_SIZE_LIMITATION"}
TEXT = "a line of plain text from the source"


def record_line(data: str, meta: str = "") -> str:
    return f'{{"type":"RECORD","record":{{"stream":"users","data":{data},"emitted_at":1{meta}}}}}'


def nulled(field: str) -> dict[str, str]:
    return {"field": field, "change": "NULLED", "reason": "DESTINATION_SERIALIZATION_ERROR"}


def make(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Target | None:
    if kind == "jsonl":
        return JsonlTarget(tmp_path)
    if kind == "duckdb":
        return DuckDBTarget(tmp_path)
    if kind == "postgres":
        return PostgresTarget(tmp_path, request.getfixturevalue("pg_database"))
    return None


@pytest.mark.parametrize("kind", ["jsonl", "duckdb", "postgres", "devnull"])
def test_a_record_with_a_lone_surrogate_is_stored_and_counted_once(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    target = make(kind, tmp_path, request)
    odd = record_line(ODD_DATA, f',"meta":{{"changes":[{json.dumps(SOURCE_CHANGE)}]}}')
    steps: list[dict[str, Any]] = [
        {"stdout_hex": odd.encode().hex()},
        {"stdout_hex": record_line(NORMAL_DATA).encode().hex()},
        {"stdout_hex": TEXT.encode().hex()},
        {"state": {"name": "users"}},
    ]
    source_config = tmp_path / "source.json"
    source_config.write_text(json.dumps({"read_steps": steps, "discover_steps": [{"catalog": CATALOG}]}))
    cli = Cli(tmp_path / "home", SYNC_JOB_MAX_ATTEMPTS="1")
    destination = ["--destination", f"builtin:destination-{kind}"]
    if target is not None:
        destination += ["--destination-config", str(target.config)]

    synced = cli.json(
        "sync",
        "--source",
        f"exec:{scripted_source(tmp_path)}",
        "--source-config",
        str(source_config),
        *destination,
    )

    assert synced["status"] == "completed", synced["failures"]
    [stream] = synced["streams"]
    assert (stream["records_emitted"], stream["records_committed"]) == (2, 2)
    log = Path(synced["log"]).read_text()
    assert f"source INFO {TEXT}" in log  # a line of text: logged, never handed on
    if isinstance(target, JsonlTarget):
        stored = (tmp_path / "files" / "users.jsonl").read_bytes()
        assert stored.decode().splitlines() == [ODD_DATA, NORMAL_DATA]  # the escapes as written
    elif target is not None:
        rows = target.rows("users", "id, v, o, w, _airbyte_meta")
        assert [row[:4] for row in rows] == [(1, None, None, "fine 😀"), (2, "b", {"k": "c"}, "x")]
        assert [row[4]["changes"] for row in rows] == [[SOURCE_CHANGE, nulled("v"), nulled("o")], []]
    if target is not None:  # the destination's own count agrees (devnull stores nothing: by design)
        assert re.search(rf"destination INFO destination-{kind}: (wrote|loaded) 2 records", log)
