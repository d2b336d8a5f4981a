"""What the store-backed commands need: the job service on the store, and what is secret.

Which config fields are secret comes from the connector's spec (``airbyte_secret``), fetched
once per installed connector and cached; fields whose names look like credentials are masked
too, and are all that is masked when the spec cannot be had.

The store, the engine and the service are imported when a command opens them, so the ad-hoc
commands (and ``ferryman version``) do not pay for SQLAlchemy and migrations they never use.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from ferryman.cli.common import note
from ferryman.cli.foreground import run_quietly
from ferryman.connectors import parse_reference, resolve
from ferryman.errors import FerrymanError
from ferryman.launchers import ConnectorLauncher
from ferryman.secrets import mask_config, secret_keys
from ferryman.settings import Settings
from ferryman.workers.specs import config_secrets, connector_spec

if TYPE_CHECKING:
    from ferryman.service import JobService
    from ferryman.store.base import Actor, Job

SOURCE, DESTINATION = "source", "destination"  # the actor kinds of the store and the service


@contextmanager
def job_service() -> Iterator[JobService]:
    """The service on the store (FERRYMAN_DATABASE_URL, else SQLite under FERRYMAN_HOME),
    with a local engine for the jobs this command runs in its own process.

    Jobs whose engine is gone are recovered first, with a line on stderr for each."""
    from ferryman.engines.local import LocalEngine
    from ferryman.service import JobService
    from ferryman.store import open_store

    settings = Settings.from_env()
    store = open_store(home=settings.home)
    try:
        service = JobService(store, settings, LocalEngine(store, settings, foreground=True))
        service.foreground = partial(run_quietly, service)
        _recover(service)
        yield service
    finally:
        store.close()


def _recover(service: JobService) -> None:
    """Recover jobs whose engine is gone; a store that cannot take it (a full disk) must not
    stop the command itself, least of all one that only reads."""
    try:
        recovered = service.recover_abandoned()
    except Exception as exc:
        note(f"could not recover jobs whose engine is gone: {str(exc).strip().splitlines()[0][:300]}")
        return
    for attempt in recovered:
        note(
            f"job {attempt.job_id} was left running by a process that is gone "
            f"({attempt.engine_id}): its connectors were stopped and its attempt "
            f"{attempt.number} marked failed"
        )


def _strings(config: Any) -> Iterator[str]:
    """Every scalar of a config as text: the values a secret could be among."""
    if isinstance(config, dict):
        for value in config.values():
            yield from _strings(value)
    elif isinstance(config, list):
        for item in config:
            yield from _strings(item)
    elif isinstance(config, str | int) and not isinstance(config, bool):
        yield str(config)


def _job_configs(job: Job) -> list[tuple[str, dict[str, Any]]]:
    """(connector, config) pairs of a job's snapshot: its connector's, or both sides' of a sync."""
    found = []
    for part in (job.config, job.config.get("source"), job.config.get("destination")):
        if isinstance(part, dict) and part.get("connector") and isinstance(part.get("config"), dict):
            found.append((str(part["connector"]), part["config"]))
    return found


def _longest_first(values: Iterable[str]) -> list[str]:
    # The longest first, so a secret that contains another is masked whole.
    return sorted(set(values), key=len, reverse=True)


@dataclass
class Secrets:
    """Masks configs and finds secret values, asking each connector for its spec at most once."""

    settings: Settings = field(default_factory=Settings.from_env)
    _specs: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def spec(self, reference: str, strict: bool = False) -> dict[str, Any] | None:
        """The connector's spec; None when it cannot be had. ``strict``: a reference that cannot
        be resolved (a bad reference, a PyPI package that will not install) raises instead."""
        if reference not in self._specs:
            try:
                connector = resolve(parse_reference(reference), self.settings.venvs)
                self._specs[reference] = connector_spec(
                    connector, ConnectorLauncher(), self.settings.workspace, self.settings.lifecycle
                )
            except FerrymanError:
                if strict:
                    raise
                self._specs[reference] = None  # masked by field names alone
        return self._specs[reference]

    def masked(self, reference: str, config: dict[str, Any]) -> Any:
        """The config with the spec's secret fields, and credential-like fields, masked."""
        spec = self.spec(reference)
        if spec is not None:
            config = mask_config(config, secret_keys(spec))
        return mask_config(config, None)

    def values(self, reference: str, config: dict[str, Any]) -> list[str]:
        return config_secrets(self.spec(reference), config)

    def of_actors(self, *actors: Actor) -> list[str]:
        return _longest_first(v for a in actors for v in self.values(a.connector, a.config))

    def of_job(self, job: Job, text: str | None = None) -> list[str]:
        """Secret values of a job's configs. Given the ``text`` about to be printed, a spec is
        fetched only when some value of that config occurs in it: otherwise nothing of that
        config can need masking, and a spec run (a process for a built-in) is saved."""
        return _longest_first(
            value
            for reference, config in _job_configs(job)
            if text is None or any(len(s) >= 3 and s in text for s in _strings(config))
            for value in self.values(reference, config)
        )
