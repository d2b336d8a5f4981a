"""Which refused connections destination-postgres leaves to a retry and which it blames on the
config: the texts are libpq's, as psycopg gives them (a refusal carries no SQLSTATE)."""

from __future__ import annotations

import pytest

from ferryman.builtin._postgres_refusals import config_refusal, passing_refusal


@pytest.mark.parametrize(
    "text",
    [
        "connection failed: server does not support SSL, but SSL was required",
        'invalid sslmode value: "requre"',
        "connection failed: SSL error: certificate verify failed",
        'connection failed: FATAL:  password authentication failed for user "loader"',
        'connection failed: FATAL:  database "warehouse" does not exist',
    ],
)
def test_a_refusal_a_retry_would_meet_again_is_the_configs(text: str) -> None:
    assert config_refusal(text)
    assert passing_refusal(text, "loader@db:5432/warehouse") is None


@pytest.mark.parametrize(
    "text",
    [
        # A network cut or a server restart during the TLS handshake: the next attempt may pass.
        "connection failed: SSL SYSCALL error: EOF detected",
        "connection failed: SSL connection has been closed unexpectedly",
    ],
)
def test_an_ssl_session_cut_short_is_not_blamed_on_the_config(text: str) -> None:
    assert not config_refusal(text)
