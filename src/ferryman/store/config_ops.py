"""Sources, destinations, connections and connection state: the configuration half of the store."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection as SqlConnection
from sqlalchemy.exc import IntegrityError

from ferryman.errors import UserInputError
from ferryman.store import rows
from ferryman.store.base import Actor, AlreadyExists, Connection, ConnectionBusy, ConnectionLabel, NotFound
from ferryman.store.db import Database
from ferryman.store.schema import (
    CONNECTION_BUT_CATALOG,
    LIVE_STATUSES,
    REPLICATION_TYPES,
    actors,
    bound_late,
    connection_state,
    connections,
    jobs,
)

KINDS = ("source", "destination")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise UserInputError(f"unknown actor kind {kind!r}: expected 'source' or 'destination'")


MAX_ID = rows.MAX_ID
ID_PREFIX = "id:"
_NUMBER = re.compile(r"[0-9]+")


def as_id(text: str) -> int | None:
    """The id a bare number names (ASCII digits within 64 bits), else None."""
    if not _NUMBER.fullmatch(text):
        return None
    value = int(text)
    return value if 0 < value <= MAX_ID else None


MAX_NAME_CHARS = 255  # the name columns are VARCHAR(255); Postgres refuses longer, SQLite would not
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_name_text(what: str, name: str) -> None:
    """Refuse a name no store keeps alike: empty, too long, or with control characters (a NUL
    Postgres cannot store; a newline or tab breaks every table and log line that shows it)."""
    if not name.strip():
        raise UserInputError(f"{what} needs a name")
    if len(name) > MAX_NAME_CHARS:
        raise UserInputError(
            f"{what}'s name is {len(name)} characters long: give one of at most {MAX_NAME_CHARS}"
        )
    control = _CONTROL.search(name)
    if control is not None:
        raise UserInputError(
            f"{what}'s name {name!r} holds a control character ({control.group()!r}): use printable text"
        )


def check_mapping_text(prefix: str | None, namespace_format: str | None) -> None:
    """Refuse control characters in a connection's prefix or namespace format: they become
    part of the destination's table and schema names (and a NUL is not kept by Postgres)."""
    for what, text in (("prefix", prefix), ("namespace format", namespace_format)):
        control = _CONTROL.search(text or "")
        if control is not None:
            raise UserInputError(
                f"a connection's {what} {text!r} holds a control character ({control.group()!r}): "
                "use printable text"
            )


def check_new_name(kind: str, name: str) -> None:
    """Refuse a name that reads as an id: ``12`` or ``id:12`` would make lookups ambiguous."""
    check_name_text(f"a {kind}", name)
    if _NUMBER.fullmatch(name) or name.startswith(ID_PREFIX):
        raise UserInputError(
            f"a {kind} cannot be named {name!r}: a number (or id:N) means an id; "
            "use a name with a letter in it"
        )


def _find(
    conn: SqlConnection, table: sa.Table, id_or_name: str, *where: Any, columns: Sequence[Any] = ()
) -> Any:
    """The row the user means: ``id:12`` is id 12 only; otherwise the row with that exact name,
    else, for a bare number, the row with that id (a name wins; new names cannot be numbers).
    ``columns``: only these (default: the whole row)."""
    if id_or_name.startswith(ID_PREFIX):
        wanted = as_id(id_or_name[len(ID_PREFIX) :])
        return None if wanted is None else _by_id(conn, table, wanted, *where, columns=columns)
    row = conn.execute(sa.select(*(columns or [table])).where(table.c.name == id_or_name, *where)).first()
    wanted = as_id(id_or_name)
    if row is None and wanted is not None:
        row = _by_id(conn, table, wanted, *where, columns=columns)
    return row


def _by_id(
    conn: SqlConnection, table: sa.Table, row_id: int, *where: Any, columns: Sequence[Any] = ()
) -> Any:
    if not 0 < row_id <= MAX_ID:
        return None
    return conn.execute(sa.select(*(columns or [table])).where(table.c.id == row_id, *where)).first()


class ConfigOps:
    _db: Database

    # -- sources and destinations -----------------------------------------------------------

    def create_actor(
        self,
        kind: str,
        name: str,
        connector: str,
        config: dict[str, Any],
        resources: dict[str, str] | None = None,
        spec: dict[str, Any] | None = None,
    ) -> Actor:
        _check_kind(kind)
        check_new_name(kind, name)
        values = {
            "kind": kind,
            "name": name,
            "connector": connector,
            "config": config,
            "resources": resources or None,
            "spec": spec,
            "created_at": rows.utcnow(),
            "uuid": str(uuid.uuid4()),
        }
        try:
            with self._db.write() as conn:
                row = conn.execute(actors.insert().values(**values).returning(*actors.c)).one()
        except IntegrityError:
            raise AlreadyExists(f"a {kind} named {name!r} exists already") from None
        return rows.actor(row)

    def get_actor(self, kind: str, id_or_name: str) -> Actor:
        """The actor a user names: by name, ``id:N``, or a bare number that is no name (an id)."""
        _check_kind(kind)
        with self._db.read() as conn:
            row = _find(conn, actors, id_or_name, actors.c.kind == kind)
        if row is None:
            raise NotFound(f"no {kind} named or numbered {id_or_name!r}")
        return rows.actor(row)

    def get_actor_by_id(self, kind: str, actor_id: int) -> Actor:
        _check_kind(kind)
        with self._db.read() as conn:
            row = _by_id(conn, actors, actor_id, actors.c.kind == kind)
        if row is None:
            raise NotFound(f"no {kind} with id {actor_id}")
        return rows.actor(row)

    def list_actors(self, kind: str) -> list[Actor]:
        _check_kind(kind)
        with self._db.read() as conn:
            result = conn.execute(sa.select(actors).where(actors.c.kind == kind).order_by(actors.c.id))
            return [rows.actor(row) for row in result]

    def delete_actor(self, kind: str, actor_id: int) -> None:
        """Delete the actor with this id; refused while a connection uses it."""
        _check_kind(kind)
        try:
            with self._db.write() as conn:
                row = _by_id(conn, actors, actor_id, actors.c.kind == kind)
                if row is None:
                    raise NotFound(f"no {kind} with id {actor_id}")
                users = conn.execute(
                    sa.select(connections.c.name).where(
                        sa.or_(connections.c.source_id == row.id, connections.c.destination_id == row.id)
                    )
                ).scalars()
                names = sorted(users)
                if names:
                    raise UserInputError(
                        f"{kind} {row.name!r} is used by connection(s) {', '.join(names)}: delete them first"
                    )
                conn.execute(actors.delete().where(actors.c.id == row.id))
        except IntegrityError:  # a connection appeared in the meantime (Postgres)
            raise UserInputError(
                f"{kind} {actor_id} is used by a connection: delete the connection first"
            ) from None

    def update_actor_config(
        self, actor_id: int, config: dict[str, Any], expected: dict[str, Any] | None = None
    ) -> bool:
        """Store ``config`` as the actor's. Given ``expected`` (the config the new one was made
        from), a compare-and-set: when the stored config is another by now, nothing is written
        and the answer is False (an edit made meanwhile, which a blind write would lose)."""
        with self._db.write() as conn:
            stored = conn.execute(
                sa.select(actors.c.config).where(actors.c.id == actor_id).with_for_update()
            ).first()  # Postgres: the row is held until the write; SQLite: the write lock is
            if stored is None:
                raise NotFound(f"no source or destination with id {actor_id}")
            if expected is not None and stored.config != expected:
                return False
            conn.execute(actors.update().where(actors.c.id == actor_id).values(config=config))
        return True

    def set_actor_spec(self, actor_id: int, connector: str, spec: dict[str, Any]) -> None:
        with self._db.write() as conn:
            conn.execute(
                actors.update()
                .where(actors.c.id == actor_id, actors.c.connector == connector)
                .values(spec=spec)
            )

    # -- connections ------------------------------------------------------------------------

    def create_connection(
        self,
        name: str,
        source_id: int,
        destination_id: int,
        catalog: dict[str, Any],
        namespace_definition: str = "source",
        namespace_format: str | None = None,
        prefix: str = "",
        schedule: dict[str, Any] | None = None,
        status: str = "active",
        next_run_at: datetime | None = None,
    ) -> Connection:
        check_new_name("connection", name)
        check_mapping_text(prefix, namespace_format)
        values = {
            "name": name,
            "source_id": source_id,
            "destination_id": destination_id,
            "catalog": catalog,
            "namespace_definition": namespace_definition,
            "namespace_format": namespace_format,
            "prefix": prefix,
            "status": status,
            "schedule": schedule,
            "next_run_at": next_run_at,
            "created_at": rows.utcnow(),
            "uuid": str(uuid.uuid4()),
        }
        try:
            with self._db.write() as conn:
                for kind, actor_id in (("source", source_id), ("destination", destination_id)):
                    found = conn.execute(
                        sa.select(actors.c.id).where(actors.c.id == actor_id, actors.c.kind == kind)
                    ).first()
                    if found is None:
                        raise NotFound(f"no {kind} with id {actor_id}")
                kept, late = bound_late(values)  # the catalog: see bound_late
                row = conn.execute(connections.insert().values(**kept).returning(*connections.c), late).one()
        except IntegrityError:
            raise AlreadyExists(f"a connection named {name!r} exists already") from None
        return rows.connection(row)

    def get_connection(self, id_or_name: str, catalog: bool = True) -> Connection:
        """The connection a user names: by name, ``id:N``, or a bare number that is no name.
        Without ``catalog``, its catalog is left unread (:class:`UnreadCatalog`)."""
        with self._db.read() as conn:
            row = _find(conn, connections, id_or_name, columns=() if catalog else CONNECTION_BUT_CATALOG)
        if row is None:
            raise NotFound(f"no connection named or numbered {id_or_name!r}")
        return rows.connection(row)

    def get_connection_by_id(self, connection_id: int, catalog: bool = True) -> Connection:
        """Without ``catalog``, its catalog is left unread (:class:`UnreadCatalog`)."""
        with self._db.read() as conn:
            row = _by_id(conn, connections, connection_id, columns=() if catalog else CONNECTION_BUT_CATALOG)
        if row is None:
            raise NotFound(f"no connection with id {connection_id}")
        return rows.connection(row)

    def update_connection_catalog(self, connection_id: int, catalog: dict[str, Any]) -> Connection:
        """Replace the connection's configured catalog (its stream selection and modes)."""
        with self._db.write() as conn:
            row = conn.execute(
                connections.update()
                .where(connections.c.id == connection_id)
                .values(catalog=sa.bindparam("late_catalog"))  # see bound_late
                .returning(*connections.c),
                {"late_catalog": catalog},
            ).first()
        if row is None:
            raise NotFound(f"no connection with id {connection_id}")
        return rows.connection(row)

    def list_connections(
        self, catalogs: bool = True, offset: int = 0, limit: int | None = None
    ) -> list[Connection]:
        if catalogs:
            select = sa.select(connections)
        else:  # megabytes of JSON each for thousands of streams: the database counts them
            select = sa.select(
                *CONNECTION_BUT_CATALOG, _stream_count(self._db.dialect).label("counted_streams")
            )
        select = select.order_by(connections.c.id).offset(offset).limit(limit)
        with self._db.read() as conn:
            return [rows.connection(row) for row in conn.execute(select)]

    def connection_labels(self) -> list[ConnectionLabel]:
        """Every connection's id, name and ends, by id, without reading its catalog."""
        columns = [connections.c[name] for name in ("id", "name", "uuid", "source_id", "destination_id")]
        with self._db.read() as conn:
            result = conn.execute(sa.select(*columns).order_by(connections.c.id))
            return [ConnectionLabel(*row) for row in result]

    # -- connection state -------------------------------------------------------------------

    def get_state(self, connection_id: int) -> list[dict[str, Any]]:
        with self._db.read() as conn:
            state = conn.execute(
                sa.select(connection_state.c.state).where(connection_state.c.connection_id == connection_id)
            ).scalar()
        return list(state or [])

    def save_state(self, connection_id: int, state: list[dict[str, Any]], job_id: int | None = None) -> None:
        """The connection's committed state, replacing the previous one."""
        try:
            with self._db.write() as conn:
                conn.execute(*state_upsert(self._db, connection_id, state, job_id))
        except IntegrityError:
            raise NotFound(f"no connection with id {connection_id}") from None

    def clear_state(self, connection_id: int) -> None:
        with self._db.write() as conn:
            conn.execute(connection_state.delete().where(connection_state.c.connection_id == connection_id))

    def replace_state(
        self, connection_id: int, state: list[dict[str, Any]] | None, expected: list[dict[str, Any]]
    ) -> bool:
        """A user's edit of the connection's state (None: forget it), in one transaction with its
        checks: refused with :class:`ConnectionBusy` while a sync or reset of the connection is
        live (pending, running or incomplete: its attempts read the state at their start and
        save over it), and a compare-and-set on ``expected``, the state the edit was made from
        (False, nothing written, when it changed meanwhile).

        The connection's row is held (Postgres: FOR UPDATE) until the commit, and enqueueing a
        sync or reset reads it FOR KEY SHARE first, so a job enqueued meanwhile either waits for
        this edit (and its attempt reads the new state) or is seen by the check. SQLite: the
        write transaction holds the file."""
        with self._db.write() as conn:
            found = conn.execute(
                sa.select(connections.c.id).where(connections.c.id == connection_id).with_for_update()
            ).first()
            if found is None:
                raise NotFound(f"no connection with id {connection_id}")
            live = conn.execute(live_replication(str(connection_id))).first()
            if live is not None:
                raise ConnectionBusy(
                    f"connection {connection_id} has a {live.status} {live.type} job ({live.id}): cancel it "
                    "or let it finish before changing its state",
                    job_id=live.id,
                    status=live.status,
                )
            stored = conn.execute(
                sa.select(connection_state.c.state).where(connection_state.c.connection_id == connection_id)
            ).scalar()
            if list(stored or []) != expected:
                return False
            if state is None:
                conn.execute(
                    connection_state.delete().where(connection_state.c.connection_id == connection_id)
                )
            else:
                conn.execute(*state_upsert(self._db, connection_id, state, None))
        return True


def live_replication(scope: str) -> Any:
    """The query for the connection's live sync or reset job (at most one: a unique index)."""
    return sa.select(jobs.c.id, jobs.c.type, jobs.c.status).where(
        jobs.c.scope == scope,
        jobs.c.type.in_(REPLICATION_TYPES),
        jobs.c.status.in_(LIVE_STATUSES),
    )


def state_upsert(
    db: Database, connection_id: int, state: list[dict[str, Any]], job_id: int | None
) -> tuple[Any, dict[str, Any]]:
    """The statement that makes ``state`` the connection's committed state, and its parameters
    (the state is bound at execution: see ``schema.bound_late``)."""
    values = {"connection_id": connection_id, "state": state, "updated_at": rows.utcnow(), "job_id": job_id}
    kept, late = bound_late(values)
    statement = db.insert(connection_state).values(**kept)
    upsert = statement.on_conflict_do_update(
        index_elements=[connection_state.c.connection_id],
        set_={name: statement.excluded[name] for name in ("state", "updated_at", "job_id")},
    )
    return upsert, late


def _stream_count(dialect: str) -> sa.ColumnElement[int]:
    """The length of a connection's ``catalog.streams`` (0 when it is no array), in SQL."""
    if dialect == "postgresql":  # JSONB
        streams = connections.c.catalog.op("->")(sa.literal("streams", sa.Text))
        is_array = sa.func.jsonb_typeof(streams) == "array"
        return sa.case((is_array, sa.func.jsonb_array_length(streams)), else_=0)
    # SQLite's JSON text: 0 when it is no array, NULL when there is none
    return sa.func.coalesce(sa.func.json_array_length(connections.c.catalog, "$.streams"), 0)
