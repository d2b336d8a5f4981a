"""Ferryman's exception tree.

    FerrymanError                      root; ``retryable`` tells an engine whether to try again
    +-- UserInputError (ValueError)    bad input from a user: shown as one line, never a traceback
    |   +-- FieldError                 bad or missing input in named fields, which each surface
    |   |                              names in its own words (a CLI flag, a JSON property)
    |   +-- ConnectorReferenceError    a connector reference that cannot be parsed or found
    |   +-- ConnectorInstallError      a PyPI package that does not exist or is not a connector
    |   +-- ConfigSpecError            a connector config that does not fulfill the connector's
    |                                  spec; each problem by its field's path, never its value
    +-- LaunchError                    a connector process could not be started
    +-- ProtocolError                  a connector broke the Airbyte protocol
    +-- WorkerError                    a job could not produce its output
    +-- StoreError                     the store (SQLite or Postgres) refused an operation
        +-- StoreUnavailable           it cannot be opened, read or written: damaged, read-only,
                                       full or unreachable; the CLI's one line names the store;
                                       ``passes``: a refusal that ends on its own (a server
                                       starting, stopping or full), which a worker waits out

Errors render as ``message (key=value, ...)`` with their structured context, so a log line
or a CLI error carries what is needed to act on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class FerrymanError(Exception):
    retryable: bool = False

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = {k: v for k, v in context.items() if v is not None}

    def __str__(self) -> str:
        if not self.context:
            return self.message
        details = ", ".join(f"{k}={v}" for k, v in self.context.items())
        return f"{self.message} ({details})"


class UserInputError(FerrymanError, ValueError):
    """Something the user gave us is wrong; the message says what and what to do."""


class FieldError(UserInputError):
    """Input that is wrong in named fields. ``template`` marks each field as ``{field}``; ``str()``
    names them as they are (``namespace_format``), and a surface renders them in its own words
    with :meth:`phrase` (the CLI: ``--namespace-format``), so no message below the surfaces
    names a flag."""

    def __init__(self, template: str, *fields: str, **context: Any) -> None:
        self.template = template
        self.fields = fields
        super().__init__(self.phrase({}), **context)

    def phrase(self, names: Mapping[str, str]) -> str:
        text = self.template
        for name in self.fields:
            text = text.replace("{" + name + "}", names.get(name, name))
        return text


class ConnectorReferenceError(UserInputError):
    pass


class ConnectorInstallError(UserInputError):
    pass


class ConfigSpecError(UserInputError):
    """A config that does not fulfill its connector's spec (``connector``); ``problems`` tells
    each by the field's path and what the spec expects, never by the value sent."""

    MAX_TOLD = 5  # problems told in full in the message; past that, counted

    def __init__(self, connector: str, problems: Sequence[str]) -> None:
        told = list(problems[: self.MAX_TOLD])
        if len(problems) > self.MAX_TOLD:
            told.append(f"and {len(problems) - self.MAX_TOLD} more")
        super().__init__(
            f"the configuration does not fulfill the specification of {connector}: " + "; ".join(told)
        )
        self.connector = connector
        self.problems = list(problems)


class LaunchError(FerrymanError):
    retryable = True


class ProtocolError(FerrymanError):
    pass


class WorkerError(FerrymanError):
    retryable = True


class EngineUnavailable(WorkerError):
    """The engine cannot take a job now (Temporal refused, or did not answer in time). A job
    queued already stays queued: the Temporal workers' sweep starts its workflow later."""


class ConnectionBusy(UserInputError):
    """The connection already has a live sync or reset job (pending, running or incomplete);
    ``job_id`` and ``status`` say which."""


class StoreError(FerrymanError):
    retryable = True


class StoreUnavailable(StoreError):
    """The store cannot be used at all (not one row's problem): the message names the store
    (its URL without the password), the database's reason, and what to do. ``passes``: the
    refusal ends on its own (a server not up yet, restarting, or with every slot taken), so a
    long-running command waits for it; a wrong password or a damaged file never does."""

    def __init__(self, message: str, passes: bool = False, **context: Any) -> None:
        super().__init__(message, **context)
        self.passes = passes


def first_line(exc: BaseException, limit: int = 300) -> str:
    """What to print of an expected error in one line: its message's first line (cut at
    ``limit``), else its type's name. Never a traceback."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
