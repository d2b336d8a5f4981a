"""A Postgres store's connections give up on a server the network lost, in about a minute.

Without TCP keepalives, a statement in flight when the network drops every packet (a host gone,
a firewall's black hole) waits for an answer for ever (the kernel's keepalive starts after two
hours), and one sent into the hole waits out ~15 minutes of retransmissions: a worker stuck
there neither works nor tells its outage. Measured once with iptables dropping a private
cluster's packets (docs/reliability.md): both end after 60 s with ferryman's options, and were
still waiting after 150 s without. That takes root and a minute, so this test checks what it
depends on: the options reach libpq on every connection, and the URL's own settings win.
"""

from __future__ import annotations

import pytest

from ferryman.store.db import Database, parse_url
from tests.contract.store_support import PG_ADMIN_DB, PG_HOST, PG_PORT, PG_USER, require_postgres

URL = f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_ADMIN_DB}"


def libpq_options(url: str) -> dict[str, str]:
    database = Database(parse_url(url))
    try:
        with database.engine.connect() as conn:
            info = conn.connection.dbapi_connection.info  # type: ignore[union-attr]
            return dict(info.get_parameters())
    finally:
        database.dispose()


@pytest.fixture(autouse=True)
def _postgres() -> None:
    require_postgres()


def test_store_connections_use_keepalives_and_a_bound_on_unanswered_data() -> None:
    options = libpq_options(URL)
    assert options["connect_timeout"] == "10"
    assert options["keepalives_idle"] == "30"
    assert options["keepalives_interval"] == "10"
    assert options["keepalives_count"] == "3"
    assert options["tcp_user_timeout"] == "60000"


def test_the_urls_own_settings_win() -> None:
    options = libpq_options(URL + "?connect_timeout=3&keepalives_idle=5&tcp_user_timeout=0")
    assert options["connect_timeout"] == "3"
    assert options["keepalives_idle"] == "5"
    assert options.get("tcp_user_timeout", "0") == "0"  # libpq's default is not listed
    assert options["keepalives_count"] == "3"  # what the URL leaves alone stays ferryman's
