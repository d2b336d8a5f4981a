"""What the HTTP API adds to the store: UUID lookups, updates, the default workspace, connector
definitions, applications, and pages of jobs."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ferryman.connectors.references import BUILTIN_MODULES, definition_slug
from ferryman.errors import UserInputError
from ferryman.jobs.states import JobType
from ferryman.store import rows
from ferryman.store.base import (
    Actor,
    AlreadyExists,
    Application,
    Connection,
    Definition,
    Job,
    JobQuery,
    NotFound,
    Workspace,
)
from ferryman.store.config_ops import check_mapping_text, check_name_text, check_new_name
from ferryman.store.db import Database
from ferryman.store.schema import (
    CONNECTION_BUT_CATALOG,
    REPLICATION_TYPES,
    actors,
    applications,
    bound_late,
    connections,
    definitions,
    jobs,
    workspaces,
)

# Built-in definitions have the same UUID in every store: derived from their reference.
_BUILTIN_NAMESPACE = uuid.UUID("6c0c3f1e-5d0e-4b47-9a36-3f6f6c7a0b11")
_CONNECTION_FIELDS = frozenset(
    {
        "name",
        "status",
        "schedule",
        "prefix",
        "namespace_definition",
        "namespace_format",
        "catalog",
        "next_run_at",
        "status_reason",
        "active_since",
    }
)


def builtin_definitions() -> list[Definition]:
    found = []
    for name in BUILTIN_MODULES:
        kind, slug = definition_slug(f"builtin:{name}")
        connector = f"builtin:{name}"
        ident = str(uuid.uuid5(_BUILTIN_NAMESPACE, connector))
        found.append(Definition(ident, kind or "source", slug, connector, builtin=True))
    return found


def _definition(row: Any) -> Definition:
    return Definition(row.uuid, row.kind, row.slug, row.connector)


def _valid_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


class ApiOps:
    _db: Database

    # -- UUID lookups and updates -------------------------------------------------------------

    def get_actor_by_uuid(self, kind: str, uuid_text: str) -> Actor:
        if not _valid_uuid(uuid_text):  # names nothing; a NUL in it would not even reach Postgres
            raise NotFound(f"no {kind} with id {uuid_text}")
        with self._db.read() as conn:
            row = conn.execute(
                sa.select(actors).where(actors.c.uuid == uuid_text.lower(), actors.c.kind == kind)
            ).first()
        if row is None:
            raise NotFound(f"no {kind} with id {uuid_text}")
        return rows.actor(row)

    def rename_actor(self, actor_id: int, name: str) -> Actor:
        check_new_name("source or destination", name)
        try:
            with self._db.write() as conn:
                row = conn.execute(
                    actors.update().where(actors.c.id == actor_id).values(name=name).returning(*actors.c)
                ).first()
        except IntegrityError:
            raise AlreadyExists(f"one named {name!r} exists already") from None
        if row is None:
            raise NotFound(f"no source or destination with id {actor_id}")
        return rows.actor(row)

    def get_connection_by_uuid(self, uuid_text: str, catalog: bool = True) -> Connection:
        """The connection of this UUID; without ``catalog``, its catalog is left unread
        (:class:`UnreadCatalog`), as :meth:`get_connection` leaves it."""
        if not _valid_uuid(uuid_text):
            raise NotFound(f"no connection with id {uuid_text}")
        columns = [connections] if catalog else CONNECTION_BUT_CATALOG
        with self._db.read() as conn:
            row = conn.execute(sa.select(*columns).where(connections.c.uuid == uuid_text.lower())).first()
        if row is None:
            raise NotFound(f"no connection with id {uuid_text}")
        return rows.connection(row)

    def update_connection(self, connection_id: int, **values: Any) -> Connection:
        unknown = set(values) - _CONNECTION_FIELDS
        if unknown:
            raise ValueError(f"not a connection field: {', '.join(sorted(unknown))}")
        if "name" in values:
            check_new_name("connection", values["name"])
        check_mapping_text(values.get("prefix"), values.get("namespace_format"))
        try:
            kept, late = bound_late(values)  # a catalog: see bound_late
            with self._db.write() as conn:
                row = conn.execute(
                    connections.update()
                    .where(connections.c.id == connection_id)
                    .values(**kept)
                    .returning(*connections.c),
                    late,
                ).first()
        except IntegrityError:
            raise AlreadyExists(f"a connection named {values.get('name')!r} exists already") from None
        if row is None:
            raise NotFound(f"no connection with id {connection_id}")
        return rows.connection(row)

    # -- workspace ----------------------------------------------------------------------------

    def default_workspace(self) -> Workspace:
        """The one workspace (made by the migration): everything belongs to it."""
        with self._db.read() as conn:
            row = conn.execute(sa.select(workspaces).order_by(workspaces.c.created_at).limit(1)).one()
        return Workspace(row.uuid, row.name, row.created_at)

    # -- connector definitions ----------------------------------------------------------------

    def list_definitions(self, kind: str | None = None) -> list[Definition]:
        query = sa.select(definitions).order_by(definitions.c.kind, definitions.c.slug)
        with self._db.read() as conn:
            added = [_definition(row) for row in conn.execute(query)]
        return [d for d in [*builtin_definitions(), *added] if kind is None or d.kind == kind]

    def add_definition(self, kind: str, slug: str, connector: str) -> Definition:
        if kind not in ("source", "destination"):
            raise UserInputError(f"a definition is of a source or a destination, not {kind!r}")
        if not slug.strip() or _valid_uuid(slug):
            raise UserInputError(f"a definition's slug must be a name, not {slug!r}")
        check_name_text("a definition", slug)
        if any(d.kind == kind and d.slug == slug for d in builtin_definitions()):
            raise AlreadyExists(f"{slug!r} is a built-in {kind} definition")
        ident = str(uuid.uuid4())
        values = {
            "uuid": ident,
            "kind": kind,
            "slug": slug,
            "connector": connector,
            "created_at": rows.utcnow(),
        }
        try:
            with self._db.write() as conn:
                conn.execute(definitions.insert().values(**values))
        except IntegrityError:
            raise AlreadyExists(f"a {kind} definition {slug!r} exists already") from None
        return Definition(ident, kind, slug, connector)

    def definition_for(self, kind: str, connector: str) -> Definition:
        for _ in range(3):  # another process may register the same slug at the same moment
            known = self.list_definitions(kind)
            for definition in known:
                if definition.connector == connector:
                    return definition
            base = definition_slug(connector)[1]
            taken = {d.slug for d in known}
            slug, n = base, 2
            while slug in taken:
                slug, n = f"{base}-{n}", n + 1
            try:
                return self.add_definition(kind, slug, connector)
            except AlreadyExists:
                continue
        raise AlreadyExists(f"could not register a definition for {connector}")

    # -- applications -------------------------------------------------------------------------

    def create_application(self, name: str, secret_hash: str) -> Application:
        check_name_text("an application", name)
        app = Application(str(uuid.uuid4()), name, secret_hash, rows.utcnow())
        try:
            with self._db.write() as conn:
                conn.execute(
                    applications.insert().values(
                        client_id=app.client_id, name=name, secret_hash=secret_hash, created_at=app.created_at
                    )
                )
        except IntegrityError:
            raise AlreadyExists(f"an application named {name!r} exists already") from None
        return app

    def get_application(self, client_id: str) -> Application | None:
        if not _valid_uuid(client_id):  # client ids are UUIDs: anything else is unknown, not an error
            return None
        with self._db.read() as conn:
            row = conn.execute(sa.select(applications).where(applications.c.client_id == client_id)).first()
        return None if row is None else Application(row.client_id, row.name, row.secret_hash, row.created_at)

    def list_applications(self) -> list[Application]:
        with self._db.read() as conn:
            result = conn.execute(sa.select(applications).order_by(applications.c.created_at))
            return [Application(r.client_id, r.name, r.secret_hash, r.created_at) for r in result]

    def delete_application(self, client_id_or_name: str) -> Application:
        where = sa.or_(
            applications.c.client_id == client_id_or_name, applications.c.name == client_id_or_name
        )
        with self._db.write() as conn:
            row = conn.execute(applications.delete().where(where).returning(*applications.c)).first()
        if row is None:
            raise NotFound(f"no application named or with client id {client_id_or_name!r}")
        return Application(row.client_id, row.name, row.secret_hash, row.created_at)

    # -- jobs ---------------------------------------------------------------------------------

    def page_jobs(self, query: JobQuery) -> list[Job]:
        column = {"updated_at": jobs.c.updated_at, "id": jobs.c.id}.get(query.order_by, jobs.c.created_at)
        order = (column.desc(), jobs.c.id.desc()) if query.descending else (column, jobs.c.id)
        # A replication job's config holds its catalog: megabytes for thousands of streams, and
        # nothing a list shows. The others' (a connector and its config) names a spec job.
        config = sa.case((jobs.c.type.in_(REPLICATION_TYPES), sa.null()), else_=jobs.c.config)
        listed = [column for column in jobs.c if column.name != "config"]
        select: sa.Select[Any] = (
            sa.select(*listed, sa.type_coerce(config, jobs.c.config.type).label("config"))
            .order_by(*order)
            .offset(query.offset)
            .limit(query.limit)
        )
        with self._db.read() as conn:
            filters = _job_filters(query, bulk_types_unindexed=self._db.is_sqlite)
            return [rows.job(row) for row in conn.execute(select.where(*filters))]

    def count_jobs(self, query: JobQuery) -> int:
        select = sa.select(sa.func.count()).select_from(jobs).where(*_job_filters(query))
        with self._db.read() as conn:
            return int(conn.execute(select).scalar_one())


def _job_filters(query: JobQuery, bulk_types_unindexed: bool = False) -> list[sa.ColumnElement[bool]]:
    """``bulk_types_unindexed`` (SQLite, for a page): a filter on types that include syncs, which
    are nearly every job of a scheduled store, is written so that SQLite cannot use the type
    index for it. SQLite (no statistics) takes an index on an equality over the one that gives the
    order, and then read and sorted every sync to return 20 of them: `GET /v1/jobs` took 0.12 s at
    100,000 jobs, growing with them. Walking the order's index instead stops at the page's end."""
    found: list[sa.ColumnElement[bool]] = []
    if query.scope is not None:
        found.append(jobs.c.scope == query.scope)
    if query.types:
        names = [t.value for t in query.types]
        unindexed = bulk_types_unindexed and JobType.SYNC in query.types
        found.append((jobs.c.type.concat("") if unindexed else jobs.c.type).in_(names))
    if query.status is not None:
        found.append(jobs.c.status == str(query.status))
    if query.statuses:
        found.append(jobs.c.status.in_([str(s) for s in query.statuses]))
    bounds = [
        (jobs.c.created_at, query.created_from, query.created_to),
        (jobs.c.updated_at, query.updated_from, query.updated_to),
    ]
    for column, low, high in bounds:
        if low is not None:
            found.append(column >= low)
        if high is not None:
            found.append(column <= high)
    return found
