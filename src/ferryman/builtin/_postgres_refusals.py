"""What destination-postgres makes of a server that refuses it: passing, or the config's fault.

A refused connection carries no SQLSTATE in psycopg, only the server's (or libpq's) text, in
English unless the server's lc_messages says otherwise (then it reads as an unknown refusal, as
before). So the refusals are told apart by their words:

* **passing** (:class:`~ferryman.builtin._runtime.TransientError`, a TRACE ``transient_error``,
  retried): every connection slot taken (53300 ``sorry, too many clients already``,
  ``remaining connection slots are reserved ...``), a server starting, stopping or recovering
  (57P03 ``the database system is starting up`` / ``is shutting down`` / ``is in recovery
  mode`` / ``is not yet accepting connections``), and, in ``write`` only, nothing listening
  (``Connection refused``: a server restarting). Mid-load, a server stopped or crashed under the
  session (57P01 ``terminating connection due to administrator command``, 57P02, a connection
  closed unexpectedly) is passing too.
* **the config's** (:class:`~ferryman.builtin._runtime.ConfigError`, not retried): a password
  refused, no such role or database, no pg_hba.conf entry, SSL refused, a host name that does
  not resolve. A retry would meet them again.

``check`` keeps ``Connection refused`` a FAILED check: the user asks whether the host and port
are right, and a wrong port is refused in the same words as a server down. Each line names the
server as :meth:`~ferryman.builtin._postgres_config.PostgresConfig.describe` does (never the
password or the url).
"""

from __future__ import annotations

import psycopg

from ferryman.builtin._runtime import TransientError

NAME = "destination-postgres"

# (words of the refusal, what it means): the server will let the next attempt in on its own.
_PASSING = (
    ("too many clients already", "has every connection slot taken (max_connections)"),
    ("remaining connection slots are reserved", "has every connection slot not reserved taken"),
    ("the database system is starting up", "is starting up"),
    ("the database system is shutting down", "is shutting down"),
    ("the database system is in recovery mode", "is recovering from a crash"),
    ("the database system is not yet accepting connections", "is not yet accepting connections"),
)
_PASSING_ADVICE = {
    "has every connection slot taken (max_connections)": (
        "if it keeps failing, close idle sessions or raise the server's max_connections"
    ),
    "has every connection slot not reserved taken": (
        "if it keeps failing, close idle sessions or raise the server's max_connections"
    ),
}
# Words of a refusal a retry would meet again: the config's to fix.
_CONFIG = (
    "password authentication failed",
    "no password supplied",
    "authentication failed",
    "does not exist",  # role or database
    "no pg_hba.conf entry",
    # SSL the config asks for and the server or its certificate refuses; not "SSL SYSCALL error"
    # or "SSL connection has been closed unexpectedly", which a network or a restart gives.
    "does not support ssl",
    "ssl is not enabled",
    "certificate verify failed",
    "root certificate file",
    "invalid sslmode",
    "failed to resolve host",
    "could not translate host name",
    "name or service not known",
)
# A session the server ended under the load (a fast or immediate shutdown, a crash).
_ENDED = (
    psycopg.errors.AdminShutdown,
    psycopg.errors.CrashShutdown,
    psycopg.errors.CannotConnectNow,
    psycopg.errors.TooManyConnections,
)
_ENDED_WORDS = ("server closed the connection unexpectedly", "the connection is lost")


class ServerUnreachable(TransientError):
    """Nothing accepts connections where the config points: passing in ``write`` (a server
    restarting), a FAILED check in ``check`` (the host or port may be wrong)."""


def passing_refusal(text: str, where: str) -> TransientError | None:
    """The one line for a refused connection that passes on its own (``text``: psycopg's), or
    None when the refusal is of another kind."""
    lowered = text.lower()
    for words, meaning in _PASSING:
        if words in lowered:
            advice = _PASSING_ADVICE.get(meaning, "if it keeps failing, see the server's log")
            return TransientError(
                f"{NAME}: PostgreSQL at {where} {meaning}; the sync is retried, as a later attempt"
                f" may connect; {advice}"
            )
    if "connection refused" in lowered:
        return ServerUnreachable(
            f"{NAME}: nothing accepts connections at {where} (connection refused): is the server"
            " down or restarting? The sync is retried; if it keeps failing, check the host and"
            " port in the config"
        )
    return None


def config_refusal(text: str) -> bool:
    """Whether a refused connection's ``text`` says the config is wrong (a retry would not pass)."""
    lowered = text.lower()
    return any(words in lowered for words in _CONFIG)


def ended_under_load(exc: BaseException, where: str) -> BaseException:
    """``exc`` as a :class:`TransientError` when it is the server ending the session mid-load
    (stopped, crashed, restarting); else ``exc`` itself."""
    if not isinstance(exc, psycopg.Error):
        return exc
    text = " ".join(str(exc).split())
    if not isinstance(exc, _ENDED) and not any(words in text.lower() for words in _ENDED_WORDS):
        return exc
    return TransientError(
        f"{NAME}: PostgreSQL at {where} ended the session mid-load ({text[:200]}): the server was"
        " stopped or restarted; the sync is retried from its last state"
    )
