"""What the HTTP API keeps in the store, on SQLite and Postgres (fixtures in store_support.py)."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from alembic import command

from ferryman.credentials import Verifier, create_application
from ferryman.errors import StoreUnavailable
from ferryman.jobs.states import JobType
from ferryman.store import AlreadyExists, NotFound, SqlJobStore, open_store
from ferryman.store.base import JobQuery
from ferryman.store.migrate import alembic_config, current_revision
from tests.contract.store_support import store, store_url

__all__ = ["store", "store_url"]


def test_existing_rows_get_uuids_and_one_workspace_exists_after_the_migration(store_url: str) -> None:
    with open_store(store_url) as fresh:
        source = fresh.create_actor("source", "old", "builtin:source-bench", {})
        destination = fresh.create_actor("destination", "dst", "builtin:destination-devnull", {})
        # Rows that reference the actors, as every store in use has: the migration must not
        # rebuild a table others point at (SQLite refuses to drop it under foreign keys).
        connection = fresh.create_connection("c", source.id, destination.id, {"streams": []})
        fresh.save_state(connection.id, [{"type": "LEGACY", "data": {"cursor": 1}}])
        config = alembic_config()
        with fresh.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0003")  # a store from before the API, with a source in it
    with open_store(store_url) as store_:
        (old,) = store_.list_actors("source")
        assert uuid.UUID(old.uuid)
        assert store_.get_actor_by_uuid("source", old.uuid).name == "old"
        assert store_.default_workspace().name == "default"
        (kept,) = store_.list_connections()
        assert uuid.UUID(kept.uuid) and (kept.source_id, kept.destination_id) == (source.id, destination.id)
        assert store_.get_state(kept.id) == [{"type": "LEGACY", "data": {"cursor": 1}}]


def test_new_rows_get_their_own_uuid_and_are_found_by_it(store: SqlJobStore) -> None:
    a = store.create_actor("source", "a", "builtin:source-bench", {})
    b = store.create_actor("destination", "b", "builtin:destination-devnull", {})
    conn = store.create_connection("c", a.id, b.id, {"streams": []}, schedule={"scheduleType": "manual"})
    assert len({a.uuid, b.uuid, conn.uuid}) == 3
    assert store.get_connection_by_uuid(conn.uuid.upper()).id == conn.id
    with pytest.raises(NotFound):
        store.get_actor_by_uuid("destination", a.uuid)  # a source is no destination
    changed = store.update_connection(
        conn.id, schedule={"scheduleType": "cron", "cronExpression": "0 0 * * * ?"}
    )
    assert store.get_connection_by_uuid(conn.uuid).schedule == changed.schedule
    assert changed.schedule == {"scheduleType": "cron", "cronExpression": "0 0 * * * ?"}


def test_an_id_that_is_no_uuid_names_nothing_on_every_store(store: SqlJobStore) -> None:
    """A NUL in an id a client sends (a path, a client id) was a 422 about the store on Postgres
    ("a text value holds a NUL character"), a plain miss on SQLite: a miss on both now."""
    store.create_actor("source", "a", "builtin:source-bench", {})
    for ident in ("a\x00b", "\x00", "not-a-uuid", ""):
        with pytest.raises(NotFound):
            store.get_actor_by_uuid("source", ident)
        with pytest.raises(NotFound):
            store.get_connection_by_uuid(ident)
        assert store.get_application(ident) is None


def test_definitions_builtins_added_and_registered_from_references(store: SqlJobStore) -> None:
    slugs = {(d.kind, d.slug) for d in store.list_definitions()}
    assert {("source", "bench"), ("destination", "duckdb"), ("destination", "dev-null")} <= slugs
    faker = store.add_definition("source", "faker", "pypi:airbyte-source-faker==7.2.1")
    with pytest.raises(AlreadyExists):
        store.add_definition("source", "faker", "pypi:airbyte-source-faker==7.0.0")
    assert store.definition_for("source", "pypi:airbyte-source-faker==7.2.1") == faker
    other = store.definition_for("source", "pypi:airbyte-source-faker==6.0.0")
    assert other.slug == "faker-2" and other.uuid != faker.uuid
    # "postgres" is the built-in destination-postgres: Airbyte's image gets the next free slug.
    builtin_pg = next(d for d in store.list_definitions("destination") if d.slug == "postgres")
    assert builtin_pg.connector == "builtin:destination-postgres"
    pg = store.definition_for("destination", "docker:airbyte/destination-postgres:2.0.0")
    assert pg.slug == "postgres-2" and pg in store.list_definitions("destination")


def test_an_application_secret_is_kept_as_a_hash_and_signs_tokens(store: SqlJobStore) -> None:
    app, secret = create_application(store, "airflow")
    with store.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT secret_hash FROM applications")).scalar_one()
    assert secret not in stored and stored.startswith("pbkdf2_sha256$")
    verifier = Verifier(store)
    assert verifier.check_secret(app.client_id, secret) == app
    assert verifier.check_secret(app.client_id, secret + "x") is None
    token, lifetime = verifier.issue_token(app, now=1000.0)
    assert lifetime >= 180
    assert verifier.check_token(token, now=1000.0 + lifetime - 1) == app
    assert verifier.check_token(token, now=1000.0 + lifetime + 1) is None  # expired
    assert verifier.check_token(token[:-2] + "xx", now=1000.0) is None  # forged
    store.delete_application("airflow")
    assert verifier.check_token(token, now=1000.0) is None  # revoked with its application


def test_jobs_page_in_order_with_filters(store: SqlJobStore) -> None:
    ids = [store.enqueue(JobType.SYNC, str(n), {}).id for n in range(5)]
    store.enqueue(JobType.DISCOVER, "source:1", {})
    syncs = JobQuery(types=(JobType.SYNC,), limit=2)
    assert [j.id for j in store.page_jobs(syncs)] == ids[:2]
    assert [j.id for j in store.page_jobs(JobQuery(types=(JobType.SYNC,), offset=4, limit=2))] == ids[4:]
    newest = store.page_jobs(JobQuery(types=(JobType.SYNC,), descending=True, limit=1))
    assert [j.id for j in newest] == [ids[-1]]
    assert [j.id for j in store.page_jobs(JobQuery(scope="3", types=(JobType.SYNC,)))] == [ids[3]]


def test_an_upgrade_that_fails_changes_nothing_and_says_so_in_one_line(store_url: str) -> None:
    with open_store(store_url) as fresh:
        fresh.create_actor("source", "old", "builtin:source-bench", {})
        config = alembic_config()
        with fresh.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0003")
            # Something of the user's in the way of the next migration.
            conn.execute(sa.text("CREATE TABLE workspaces (anything INTEGER)"))
    with pytest.raises(StoreUnavailable, match="could not be upgraded to schema") as refused:
        open_store(store_url)
    assert "\n" not in str(refused.value) and "nothing in it was changed" in str(refused.value)
    untouched = SqlJobStore.open(store_url, migrate_schema=False)
    with untouched, untouched.engine.connect() as conn:
        assert current_revision(conn) == "0003"
        assert conn.execute(sa.text("SELECT name FROM actors")).scalars().all() == ["old"]
