"""What the store-backed commands need: the job service on the store.

What is secret comes from the service's read views (:mod:`ferryman.masking`), which go by the
spec kept on each actor: no display command starts a connector.

The store, the engine and the service are imported when a command opens them, so the ad-hoc
commands, ``ferryman version`` and ``--help`` do not pay for SQLAlchemy, the engine and the
workers they never use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING

from ferryman.cli.common import note
from ferryman.jobs.states import AttemptStatus
from ferryman.settings import Settings

if TYPE_CHECKING:
    from ferryman.service import JobService

SOURCE, DESTINATION = "source", "destination"  # the actor kinds of the store and the service


@contextmanager
def job_service() -> Iterator[JobService]:
    """The service on the store (FERRYMAN_DATABASE_URL, else SQLite under FERRYMAN_HOME),
    with a local engine for the jobs this command runs in its own process (or, with
    FERRYMAN_ENGINE=temporal, one that submits them to Temporal and waits).

    Jobs whose engine is gone are recovered first, with a line on stderr for each."""
    from ferryman.cli.foreground import run_quietly
    from ferryman.engines.choose import command_engine
    from ferryman.service import JobService
    from ferryman.store import open_store

    settings = Settings.from_env()
    store = open_store(home=settings.home)
    try:
        # The CLI's jobs run in its own process; a worker or server elsewhere runs the rest.
        service = JobService(store, settings, engine=command_engine(store, settings))
        service.foreground = partial(run_quietly, service)
        service.on_unsubmitted = _say_nothing  # a command says it itself (see connections._replicate)
        _recover(service)
        yield service
    finally:
        store.close()


def _say_nothing(job_id: int, reason: str) -> None:
    """A job the engine could not take: the command that queued it tells the user its own way."""


def _recover(service: JobService) -> None:
    """Recover jobs whose engine is gone; a store that cannot take it (a full disk) must not
    stop the command itself, least of all one that only reads."""
    try:
        recovered = service.recover_abandoned()
    except Exception as exc:
        note(f"could not recover jobs whose engine is gone: {str(exc).strip().splitlines()[0][:300]}")
        return
    for attempt in recovered:
        if attempt.status is AttemptStatus.FAILED:  # its job waited for a retry that none will run
            note(
                f"job {attempt.job_id} was waiting to retry in a process that is gone "
                f"({attempt.engine_id}): it is marked failed"
            )
            continue
        note(
            f"job {attempt.job_id} was left running by a process that is gone "
            f"({attempt.engine_id}): its connectors were stopped and its attempt "
            f"{attempt.number} marked failed"
        )
