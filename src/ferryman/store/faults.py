"""A database that cannot be used becomes one :class:`StoreUnavailable` naming the store.

SQLAlchemy calls ``handle_error`` for every database error, on connect too; there the errors that
are about the store as a whole (a damaged or foreign file, a read-only file or directory, a full
disk, a server that does not answer) are replaced by one error whose message says which store
(its URL, password hidden), what the database said, and what to do. Errors about one statement
(an integrity violation the store catches itself, a bug of ours) pass unchanged.
"""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.engine import Engine, ExceptionContext
from sqlalchemy.exc import DatabaseError, OperationalError

from ferryman.errors import StoreUnavailable, UserInputError

# (words in the database's message, what to do, whether it passes on its own); the first match
# wins. A refusal that passes is waited out by the long-running commands (store/waiting.py); one
# that does not ends every command at once.
_ADVICE = (
    (
        ("not a database", "malformed", "disk image"),
        "it is damaged or not a ferryman database: restore it from a backup, or move it away "
        "and ferryman starts a new one",
        False,
    ),
    (
        ("readonly", "read-only", "read only"),
        "it is read-only here: make the file and its directory writable (or point FERRYMAN_HOME "
        "at a writable one)",
        False,
    ),
    (
        ("disk is full", "no space left", "disk full"),
        "the disk is full: free some space and run it again",
        False,
    ),
    (("disk i/o error",), "the disk failed a read or write: is the disk full, or failing?", False),
    (("unable to open",), "the file cannot be opened: check FERRYMAN_HOME and its permissions", False),
    # Before "connection failed", which psycopg puts in front of every refusal at connect, these
    # too ("FATAL: database "x" does not exist" was told "cannot reach the database server").
    (
        ("password authentication", "authentication failed", "no pg_hba.conf entry", "no password supplied"),
        "the server refused the login in FERRYMAN_DATABASE_URL",
        False,
    ),
    (("does not exist",), "create that database (or role) first, or fix FERRYMAN_DATABASE_URL", False),
    # These pass on their own: a worker, scheduler or server waits them out (it backs off and
    # tries again), at start-up as once running.
    (
        ("too many clients", "remaining connection slots are reserved"),
        "the database server has every connection slot taken: run it again once other sessions "
        "end, or raise its max_connections (a `ferryman worker` waits and retries)",
        True,
    ),
    (
        ("is starting up", "is shutting down", "in recovery mode", "not yet accepting connections"),
        "the database server is starting, stopping or recovering: run it again in a moment "
        "(a `ferryman worker` waits and retries)",
        True,
    ),
    (
        ("terminating connection due to administrator command", "server closed the connection"),
        "the database server ended the session (it was stopped, restarted or the session was "
        "ended): run it again once it is back (a `ferryman worker` waits and retries)",
        True,
    ),
    # lock_timeout spent (a store upgrade sets it on Postgres: store/migrate.py): another session
    # holds a lock the statement needs. Before "timeout" below, which blamed an unreachable server.
    (
        ("due to lock timeout",),
        "another session holds a lock this needs (a long statement or transaction: see "
        "pg_stat_activity); it passes once that ends",
        True,
    ),
    # psycopg's words when a connect outlasts connect_timeout (store/db.py): the server took the
    # connection but never answered, or its packets are dropped. Passes, as a server down does.
    (
        ("connection timeout expired",),
        "the database server did not answer: is it running and not stuck, and does no firewall "
        "drop its packets? (connect_timeout in FERRYMAN_DATABASE_URL sets how long to wait)",
        True,
    ),
    (
        ("connection refused", "connection failed", "timeout", "timed out", "could not translate", "resolve"),
        "cannot reach the database server: is it running, and is FERRYMAN_DATABASE_URL right?",
        True,
    ),
)
_DEFAULT_ADVICE = "check FERRYMAN_HOME or FERRYMAN_DATABASE_URL"


def unavailable(store: str, reason: str) -> StoreUnavailable:
    """The error for the store at ``store`` (a URL without password) failing with ``reason``."""
    reason = " ".join(reason.split()) or "unknown error"
    lowered = reason.lower()
    advice, passes = next(
        ((text, passes) for words, text, passes in _ADVICE if any(w in lowered for w in words)),
        (_DEFAULT_ADVICE, False),
    )
    return StoreUnavailable(f"the store {store} cannot be used: {reason}; {advice}", passes=passes)


def _about_the_store(error: BaseException | None) -> bool:
    # DatabaseError itself (not a subclass) is what sqlite3 raises for a damaged or foreign file.
    return isinstance(error, OperationalError) or type(error) is DatabaseError


def translate_errors(engine: Engine, store: str, connect_timeout_s: int | None = None) -> None:
    """Make ``engine`` raise :class:`StoreUnavailable` for errors about the store as a whole;
    a connect that timed out says after how long (``connect_timeout_s``, when known)."""

    @event.listens_for(engine, "handle_error")
    def _handle(context: ExceptionContext) -> None:
        if "cannot contain NUL" in str(context.original_exception):
            # psycopg refuses a NUL in a text parameter before Postgres sees it: input, not a bug.
            raise UserInputError(
                "a text value holds a NUL character (\\x00), which a Postgres store cannot keep: remove it"
            ) from None
        if context.is_pre_ping or not _about_the_store(context.sqlalchemy_exception):
            return  # a pre-ping failure makes the pool reconnect; let it
        original = context.original_exception
        first = str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
        if connect_timeout_s is not None and first == "connection timeout expired":
            first = f"no answer to a connect within {connect_timeout_s}s (connection timeout expired)"
        raise unavailable(store, first) from None
