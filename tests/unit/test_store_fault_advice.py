"""The advice a store fault's line gives, for the words PostgreSQL ends a session with.

The sessions a store's server ends under a running command (a restart, pg_terminate_backend)
were told to "check FERRYMAN_HOME or FERRYMAN_DATABASE_URL", which were right. The text is what
psycopg raised when a running ``ferryman worker``'s session was ended with pg_terminate_backend
on a real server (the worker waited and retried, as it should); the e2e tests drive the refusals
a new connection meets (tests/e2e/test_cli_store_faults.py).
"""

from __future__ import annotations

import pytest

from ferryman.store.faults import unavailable

STORE = "postgresql+psycopg://ferry:***@db:5432/ferryman"


@pytest.mark.parametrize(
    "reason",
    [
        "terminating connection due to administrator command",
        "consuming input failed: server closed the connection unexpectedly",
    ],
)
def test_a_session_the_server_ended_says_so_and_to_run_it_again(reason: str) -> None:
    line = str(unavailable(STORE, reason))
    assert line.startswith(
        f"the store {STORE} cannot be used: {reason}; the database server ended the session"
    )
    assert "FERRYMAN_DATABASE_URL" not in line.split(";", 1)[1]
