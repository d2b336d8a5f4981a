"""What a line the strict decoders refuse is, read leniently, and what is wrong with it."""

from __future__ import annotations

import pytest

from ferryman.protocol.lenient import read_leniently

STATE_HEAD = b'{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"users"},'


@pytest.mark.parametrize(
    "line, kind, stream, problem",
    [
        (b'{"type":"RECORD","record":{"stream":"users","data":{"x":NaN}}}', "RECORD", "users",
         "is not valid JSON: NaN is not a JSON number"),
        (b' {"type":"RECORD","record":{"stream":"users","data":{"\\udbff":-Infinity}}}', "RECORD", "users",
         "is not valid JSON: -Infinity is not a JSON number"),  # the NaN is told before the surrogate
        (STATE_HEAD + b'"stream_state":{"cursor":["a","\\udc00"]}}}}', "STATE", "users",
         "cannot be stored: it holds a lone UTF-16 surrogate (\\udc00), which is no character"),
        (STATE_HEAD + b'"stream_state":{"cursor":-2.5e999}}}}', "STATE", "users",
         "cannot be stored: -2.5e999 is beyond the range of a double"),
        (b'{"type":"STATE","state":{"type":"GLOBAL","global":{"shared_state":{"c":NaN}}}}', "STATE", None,
         "is not valid JSON: NaN is not a JSON number"),
        (b'{"type":"RECORD","record":{"stream":"users","data":{"s":"\\ud83d\\ude00"}}}', "RECORD", "users",
         None),  # a valid pair: nothing wrong (the strict decoders refused something else)
        (b'{"type":"CATALOG","catalog":{"streams":[{"name":"users","x":Infinity}]}}', "CATALOG", None,
         "is not valid JSON: Infinity is not a JSON number"),
    ],
)  # fmt: skip
def test_a_message_is_told_by_type_and_stream_with_what_is_wrong(
    line: bytes, kind: str, stream: str | None, problem: str | None
) -> None:
    message = read_leniently(line)
    assert message is not None
    assert (message.type, message.stream, message.problem) == (kind, stream, problem)


def test_the_failure_names_the_stream_and_never_quotes_the_data() -> None:
    message = read_leniently(b'{"type":"RECORD","record":{"stream":"users","data":{"pw":"hunter2","x":NaN}}}')
    assert message is not None
    failure = message.failure("source", "unused")
    assert (
        failure
        == "the source sent a RECORD of stream 'users' that is not valid JSON: NaN is not a JSON number"
    )


def test_with_nothing_found_wrong_the_failure_ends_with_the_decoders_reason() -> None:
    message = read_leniently(STATE_HEAD + b'"stream_state":{"cursor":"caf\xe9"}}}}')  # not UTF-8
    assert message is not None and message.problem is None
    assert message.failure("destination").startswith(
        "the destination sent a STATE of stream 'users' that cannot be read: str is not valid UTF-8"
    )


@pytest.mark.parametrize(
    "line",
    [
        b"NaN",
        b"Traceback (most recent call last):",
        b'progress {"type":"RECORD"}',
        b'{"type":"RECORD","record":{"data":{"x":NaN},}}',  # not JSON even leniently
        b'{"kind":"RECORD","x":NaN}',
        b'{"type":7,"x":NaN}',
        b"[NaN]",
        b"\xff\xfe",
    ],
)
def test_what_is_no_message_even_leniently_is_none(line: bytes) -> None:
    assert read_leniently(line) is None


def test_a_line_nested_past_the_reader_raises_recursion_error_as_the_decoders_do() -> None:
    with pytest.raises(RecursionError):
        read_leniently(b'{"type":"RECORD","x":NaN,"d":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
