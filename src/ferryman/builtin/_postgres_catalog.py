"""destination-postgres's look at the database's catalog, once, before it sets up the streams.

A stream's set-up needs to know whether its table exists and with which columns, which staging
tables of the stream are there (those of its sync's earlier attempt, and abandoned ones), and
whether its unique index is made. :func:`read_catalog` reads all of it for every stream of the
sync in one query: the relations named like the streams' tables, and every relation named
``_ferryman_...`` (staging tables, indexes), in the schemas of the sync, with their columns. It
looks them up in ``pg_class`` by its index on (name, schema) and in ``pg_attribute`` by its index
on the relation, so it costs about the same on a database of many tables, or with the dead rows
of thousands of tables created and dropped in its catalog.

Before, each stream asked ``information_schema.tables`` / ``columns`` and ``pg_indexes`` one to
four times. Those views join the catalogs with privilege checks and compare names as
``sql_identifier``; a prefix match in ``information_schema.tables`` scans ``pg_class`` whole, and
each query costs milliseconds to plan: 1,000 overwrite streams spent seconds to tens of seconds
on it, growing with the database's catalog (figures in ``docs/performance.md``, session 26).

What this reads is what those views showed, for what the set-up asks: columns of tables, views,
foreign and partitioned tables, dropped columns left out, a column's type named as
``information_schema.columns.data_type`` names it (a domain by its base type, ``ARRAY``,
``USER-DEFINED``). Unlike the views, it does not leave out what the destination's role has no
privilege on: such a table fails the sync when it is altered or loaded, instead of when it is
created.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg

PREFIX = "_ferryman_"
_AFTER_PREFIX = PREFIX[:-1] + chr(ord(PREFIX[-1]) + 1)  # the first name past the prefix's range
COLUMN_KINDS = ("r", "v", "f", "p")  # those information_schema.columns lists

_QUERY = f"""
WITH found AS (
    SELECT n.nspname, c.oid, c.relname, c.relkind
    FROM unnest(%(schemas)s::name[], %(names)s::name[]) AS w(nspname, relname)
    JOIN pg_namespace n ON n.nspname = w.nspname
    JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.relname
  UNION
    SELECT n.nspname, c.oid, c.relname, c.relkind
    FROM pg_namespace n
    JOIN pg_class c ON c.relnamespace = n.oid
    WHERE n.nspname = ANY(%(within)s::name[])
      AND c.relname >= '{PREFIX}'::name AND c.relname < '{_AFTER_PREFIX}'::name
)
SELECT f.nspname, f.relname, f.relkind, a.attname,
    CASE WHEN b.typelem <> 0 AND b.typlen = -1 THEN 'ARRAY'
         WHEN b.typnamespace = 'pg_catalog'::regnamespace THEN format_type(b.oid, NULL)
         ELSE 'USER-DEFINED' END
FROM found f
LEFT JOIN pg_attribute a
    ON a.attrelid = f.oid AND a.attnum > 0 AND NOT a.attisdropped
    AND f.relkind IN ({", ".join(f"'{kind}'" for kind in COLUMN_KINDS)})
LEFT JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
"""


@dataclass
class Catalog:
    """The relations of the sync's schemas that its set-up asks about, as read at its start and
    as the set-up changed them since."""

    schemas: set[str] = field(default_factory=set)  # those that exist
    kinds: dict[tuple[str, str], str] = field(default_factory=dict)  # (schema, name): relkind
    stored: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)  # their columns
    locks: set[int] = field(default_factory=set)  # advisory locks this session took
    # The sync's own staging tables: never another stream's abandoned one, though the hash in
    # their names may be the same.
    ours: set[tuple[str, str]] = field(default_factory=set)

    def exists(self, schema: str, name: str) -> bool:
        return (schema, name) in self.kinds

    def is_index(self, schema: str, name: str) -> bool:
        return self.kinds.get((schema, name)) in ("i", "I")

    def columns(self, schema: str, name: str) -> dict[str, str]:
        """The columns of a table (or view) and their types; empty for one that is not there."""
        return self.stored.get((schema, name), {})

    def named(self, schema: str, prefix: str) -> list[str]:
        """The tables (and views) in ``schema`` whose names start with ``prefix`` (which starts
        with :data:`PREFIX`), as information_schema.tables would list them."""
        return sorted(
            name
            for (where, name), kind in self.kinds.items()
            if where == schema and kind in COLUMN_KINDS and name.startswith(prefix)
        )

    def made(self, schema: str, name: str, columns: dict[str, str]) -> None:
        self.schemas.add(schema)
        self.kinds[(schema, name)] = "r"
        self.stored[(schema, name)] = dict(columns)

    def renamed(self, schema: str, name: str, to: str) -> None:
        self.kinds[(schema, to)] = self.kinds.pop((schema, name))
        self.stored[(schema, to)] = self.stored.pop((schema, name), {})

    def dropped(self, schema: str, name: str) -> None:
        self.kinds.pop((schema, name), None)
        self.stored.pop((schema, name), None)


def read_catalog(conn: psycopg.Connection[Any], names: Iterable[tuple[str, str]]) -> Catalog:
    """What the catalog holds of the relations ``names`` ((schema, name) pairs) and of those
    named ``_ferryman_...`` in their schemas."""
    wanted = sorted(set(names))
    schemas = sorted({schema for schema, _ in wanted})
    catalog = Catalog()
    if not wanted:
        return catalog
    found = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s::name[])", (schemas,)
    ).fetchall()
    catalog.schemas = {str(schema) for (schema,) in found}
    rows = conn.execute(
        _QUERY,
        {
            "schemas": [schema for schema, _ in wanted],
            "names": [name for _, name in wanted],
            "within": schemas,
        },
    ).fetchall()
    for schema, name, kind, column, data_type in rows:
        key = (str(schema), str(name))
        catalog.kinds[key] = str(kind)
        if kind in COLUMN_KINDS:
            columns = catalog.stored.setdefault(key, {})
            if column is not None:
                columns[str(column)] = str(data_type)
    return catalog
