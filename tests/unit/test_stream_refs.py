"""Writing a stream as (namespace, name): what each written form picks, and what is refused."""

from __future__ import annotations

import pytest

from ferryman.errors import UserInputError
from ferryman.protocol.stream_refs import StreamRef, resolve, split_written, written

STREAMS = [
    {"name": "users", "namespace": "public"},
    {"name": "users", "namespace": "crm"},
    {"name": "users"},
    {"name": "crm.users"},
    {"name": "orders", "namespace": "my.schema"},
    {"name": 'a "b", c', "namespace": "x"},
]


@pytest.mark.parametrize(
    ("text", "picked"),
    [
        ("public.users", ("public", "users")),
        ('"crm"."users"', ("crm", "users")),
        ('"users"', (None, "users")),
        ('"crm.users"', (None, "crm.users")),
        ("orders", ("my.schema", "orders")),
        ("my.schema.orders", ("my.schema", "orders")),
        ('"my.schema".orders', ("my.schema", "orders")),
        ('x."a ""b"", c"', ("x", 'a "b", c')),
    ],
)
def test_each_written_form_picks_one_stream(text: str, picked: tuple[str | None, str]) -> None:
    assert resolve([StreamRef.parse(text)], STREAMS, "the source offers") == [picked]


def test_a_plain_name_in_several_namespaces_is_refused_listing_each_as_it_can_be_written() -> None:
    with pytest.raises(UserInputError) as refused:
        resolve([StreamRef.parse("users")], STREAMS, "the source offers")
    assert str(refused.value) == (
        'stream \'users\' is ambiguous: it could be public.users, "crm"."users", "users"; '
        "name one with its namespace"
    )
    # Each form it offers picks its stream alone.
    for stream in STREAMS:
        key = (stream.get("namespace"), stream["name"])
        assert resolve([StreamRef.parse(written(stream, STREAMS))], STREAMS, "-") == [key]


def test_the_api_form_matches_the_name_alone_or_the_exact_namespace() -> None:
    assert resolve([StreamRef.named("users", "crm")], STREAMS, "-") == [("crm", "users")]
    assert resolve([StreamRef.named("orders")], STREAMS, "-") == [("my.schema", "orders")]
    # "namespace": null, as clients that send every field do: the one without, else by name.
    assert resolve([StreamRef.null_namespace("users")], STREAMS, "-") == [(None, "users")]
    assert resolve([StreamRef.null_namespace("orders")], STREAMS, "-") == [("my.schema", "orders")]
    with pytest.raises(UserInputError, match=r"unknown stream\(s\) my.orders"):
        resolve([StreamRef.named("my.orders")], STREAMS, "-")  # a name, never namespace.name


@pytest.mark.parametrize("text", ['"users', '"a"b', '"a"."b"."c"', '"a".', "", 'a"b'])
def test_malformed_text_is_one_clear_error(text: str) -> None:
    with pytest.raises(UserInputError, match="stream"):
        StreamRef.parse(text)


def test_separators_inside_quotes_do_not_split() -> None:
    assert split_written('a,"b,c".d,e', ",") == ["a", '"b,c".d', "e"]
    assert split_written('"x:y":full_refresh:append', ":") == ['"x:y"', "full_refresh", "append"]
