"""The built-in destinations' slow path for RECORD lines msgspec refuses (a lone UTF-16 surrogate
escape): destination-jsonl's data as written, the SQL destinations' rewritten line."""

from __future__ import annotations

import msgspec

from ferryman.builtin._columns import Column
from ferryman.builtin._refused import data_text, without_lone_surrogates


def test_the_data_is_cut_out_of_the_line_exactly_as_written() -> None:
    line = (
        b' { "type" : "RECORD" , "record" : { "stream" : "users", "x": {"data": 1},'
        b' "d\\u0061ta" : {"v": "a\\ud800b",  "q": "\\"}"} , "emitted_at": 1 } } '
    )
    assert data_text(line) == b'{"v": "a\\ud800b",  "q": "\\"}"}'  # its key written with an escape too
    repeated = b'{"type":"RECORD","record":{"stream":"s","data":{"a":1},"data":{"b":"\\udc00"}}}'
    assert data_text(repeated) == b'{"b":"\\udc00"}'  # the last one, as json.loads reads it


def test_no_data_or_no_json_gives_nothing() -> None:
    assert data_text(b'{"type":"RECORD","record":{"stream":"s","emitted_at":1}}') is None
    assert data_text(b'{"type":"RECORD","record":"\\ud800"}') is None
    assert data_text(b'{"type":"RECORD","record":{"stream":"s","data":{"a":') is None
    assert data_text(b"plain text") is None


def column(name: str, kind: str = "string", path: tuple[str, ...] | None = None) -> Column:
    return Column(name, ".".join(path or (name,)), path or (name,), kind)  # type: ignore[arg-type]


def test_a_column_holding_a_lone_surrogate_is_null_and_listed_every_other_value_kept() -> None:
    line = (
        b'{"type":"RECORD","record":{"stream":"s","emitted_at":1,"meta":{"changes":[{"field":"q"}]},'
        b'"data":{"k":{"n":5,"x":"\\ud800"},"s":"ok \\ud83d\\ude00","big":123456789012345678901234567890,'
        b'"f":0.10000000000000000001,"t":"\\udfff","other":{"\\ud800":"\\ud800"}}}}'
    )
    columns = [
        column("k", "json"),
        column("s"),
        column("big", "json"),
        column("f", "number"),
        column("t"),
        column("k_n", "integer", ("k", "n")),
    ]
    rewritten = without_lone_surrogates(line, columns)

    record = msgspec.json.decode(rewritten)["record"]
    assert record["data"] == {
        "k": None,  # the object holds one: all of it, and the key field inside it, is NULL
        "s": "ok \U0001f600",
        "big": 123456789012345678901234567890,
        "f": 0.1,
        "t": None,
        "other": {"\ufffd": "\ufffd"},  # no column: made readable, stored nowhere
    }
    assert b"0.10000000000000000001" in rewritten  # the digits as written
    changes = [
        {"field": f, "change": "NULLED", "reason": "DESTINATION_SERIALIZATION_ERROR"}
        for f in ("k", "t", "k.n")
    ]
    assert record["meta"]["changes"] == [{"field": "q"}, *changes]
