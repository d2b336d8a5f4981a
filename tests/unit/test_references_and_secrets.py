"""Connector references and failure ordering (masking: test_secrets.py)."""

from __future__ import annotations

import pytest

from ferryman.connectors import parse_reference
from ferryman.errors import ConnectorReferenceError, UserInputError
from ferryman.jobs.failures import FailureOrigin, FailureReason, FailureType, ordered


@pytest.mark.parametrize(
    ("text", "kind", "name", "version"),
    [
        ("pypi:airbyte-source-faker", "pypi", "airbyte-source-faker", None),
        ("pypi:Airbyte_Source_Faker==7.2.1", "pypi", "airbyte-source-faker", "7.2.1"),
        ("builtin:source-bench", "builtin", "source-bench", None),
        ("exec:./my-connector", "exec", "./my-connector", None),
        ("docker:airbyte/source-faker:6.2.0", "docker", "airbyte/source-faker:6.2.0", None),
    ],
)
def test_references(text: str, kind: str, name: str, version: str | None) -> None:
    ref = parse_reference(text)
    assert (ref.kind, ref.name, ref.version) == (kind, name, version)


@pytest.mark.parametrize("text", ["faker", "pypi:", "npm:thing", "pypi:bad name", "builtin:source-nope"])
def test_bad_references_are_user_errors(text: str) -> None:
    with pytest.raises(ConnectorReferenceError) as caught:
        parse_reference(text)
    assert isinstance(caught.value, UserInputError)
    assert "\n" not in str(caught.value)


def test_trace_errors_come_first_and_config_errors_are_not_retryable() -> None:
    exit_failure = FailureReason.of(FailureOrigin.SOURCE, FailureType.SYSTEM_ERROR, "exit 1", 1)
    trace = FailureReason.from_trace(
        FailureOrigin.SOURCE,
        {
            "emitted_at": 5,
            "error": {"message": "bad key", "failure_type": "config_error", "stack_trace": "tb"},
        },
        "read",
    )
    unknown = FailureReason.from_trace(
        FailureOrigin.DESTINATION, {"error": {"failure_type": "weird"}}, "write"
    )
    assert ordered([exit_failure, trace]) == [trace, exit_failure]
    assert trace.retryable is False and trace.stack_trace == "tb"
    assert unknown.type is FailureType.SYSTEM_ERROR and unknown.retryable is True


def test_a_trace_error_whose_text_fields_are_objects_reads_them_as_missing() -> None:
    """A broken connector's TRACE: the failure message is never Python's rendering of a dict."""
    odd = FailureReason.from_trace(
        FailureOrigin.SOURCE,
        {"error": {"message": {"nested": [1, 2]}, "internal_message": ["x"], "stack_trace": {"a": 1}}},
        "read",
    )
    assert odd.message == "the connector reported an error"
    assert odd.internal_message is None and odd.stack_trace is None
    fallback = FailureReason.from_trace(
        FailureOrigin.SOURCE, {"error": {"message": {"x": 1}, "internal_message": "KeyError: 'id'"}}, "read"
    )
    assert fallback.message == "KeyError: 'id'"
    coded = FailureReason.from_trace(FailureOrigin.SOURCE, {"error": {"message": 404}}, "read")
    assert coded.message == "404"
