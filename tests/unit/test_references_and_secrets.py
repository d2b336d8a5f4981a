"""Connector references, secrets masking and failure ordering."""

from __future__ import annotations

import pytest

from ferryman.connectors import parse_reference
from ferryman.errors import ConnectorReferenceError, UserInputError
from ferryman.jobs.failures import FailureOrigin, FailureReason, FailureType, ordered
from ferryman.secrets import MASK, mask_config, mask_text, secret_keys, secret_values


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


SPEC = {
    "connectionSpecification": {
        "properties": {
            "host": {"type": "string"},
            "password": {"type": "string", "airbyte_secret": True},
            "auth": {
                "oneOf": [
                    {"properties": {"api_token": {"type": "string", "airbyte_secret": True}}},
                    {"properties": {"user": {"type": "string"}}},
                ]
            },
        }
    }
}


def test_airbyte_secret_fields_are_found_in_nested_options() -> None:
    assert secret_keys(SPEC) == {"password", "api_token"}


def test_secrets_are_masked_in_configs_and_text() -> None:
    config = {"host": "db", "password": "hunter22", "auth": {"api_token": "tok-123456"}}
    keys = secret_keys(SPEC)
    assert secret_values(config, keys) == ["tok-123456", "hunter22"]
    assert mask_config(config, keys) == {"host": "db", "password": MASK, "auth": {"api_token": MASK}}
    assert mask_text("login hunter22 failed with tok-123456", secret_values(config, keys)) == (
        f"login {MASK} failed with {MASK}"
    )


def test_without_a_spec_credential_like_names_are_secret() -> None:
    assert sorted(secret_values({"client_secret": "abc123", "name": "x", "access_key": "AKIA99"})) == [
        "AKIA99",
        "abc123",
    ]


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
