"""Which message a failure is shown by: the most specific one it has."""

from __future__ import annotations

from ferryman.jobs.failures import MAX_SHOWN_CHARS, most_specific_message

GENERIC = "Something went wrong in the connector. See the logs for more details."
TRACE = 'Traceback (most recent call last):\n  File "x.py", line 3\nFileNotFoundError: /data/gone.jsonl\n'


def test_a_specific_message_is_shown_as_it_is() -> None:
    assert most_specific_message("bad credentials", "HTTP 401", TRACE) == "bad credentials"


def test_the_generic_message_gives_way_to_the_internal_message_first_line() -> None:
    internal = "No such file or directory: '/data/gone.jsonl'\nmore detail"
    assert most_specific_message(GENERIC, internal, TRACE) == "No such file or directory: '/data/gone.jsonl'"
    assert most_specific_message("", internal, None) == "No such file or directory: '/data/gone.jsonl'"


def test_without_an_internal_message_the_exception_ends_the_stack_trace() -> None:
    assert most_specific_message(GENERIC, None, TRACE) == "FileNotFoundError: /data/gone.jsonl"
    assert most_specific_message(GENERIC, "  ", None) == GENERIC  # nothing better to show


def test_a_long_internal_message_is_cut() -> None:
    shown = most_specific_message(GENERIC, "x" * 5000, None)
    assert len(shown) == MAX_SHOWN_CHARS and shown.endswith("...")
