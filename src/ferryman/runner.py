"""Run one job in this process and wait for it: what the CLI calls.

It resolves connector references, lays out ``<workspace>/<job>/<attempt>/``, learns which
config fields are secret (from the connector's spec, cached per installed version), and hands
inputs to a worker. It keeps nothing: the jobs issue adds a store and engines on top.
"""

from __future__ import annotations

import secrets as _random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ferryman.connectors import ResolvedConnector, parse_reference, resolve
from ferryman.documents import load_config as load_config
from ferryman.documents import load_document as load_document
from ferryman.errors import WorkerError
from ferryman.jobs.failures import most_specific_message
from ferryman.launchers import ConnectorLauncher, Launcher
from ferryman.private import private_dirs, secure_home
from ferryman.protocol.catalog import NamespaceMapping, check_mapping, configure_catalog
from ferryman.protocol.discovered import check_discovered
from ferryman.protocol.state import full_refresh_streams, without_streams
from ferryman.protocol.sync_modes import DESTINATION_SYNC_MODES, destination_modes
from ferryman.secrets import SecretRules, mask_text, secret_values
from ferryman.settings import Settings
from ferryman.workers import (
    AttemptContext,
    ConnectorInput,
    ConnectorJobOutput,
    ConnectorJobWorker,
    ReplicationWorker,
    SyncInput,
    SyncOutput,
    files,
    reset_input,
)
from ferryman.workers.checkpoints import StateSink
from ferryman.workers.models import ProgressCallback
from ferryman.workers.specs import connector_spec

ALL_DESTINATION_MODES = frozenset(DESTINATION_SYNC_MODES)


def new_job_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + _random.token_hex(3)


@dataclass
class Runner:
    settings: Settings = field(default_factory=Settings.from_env)
    launcher: Launcher = field(default_factory=ConnectorLauncher)

    def connector(self, reference: str) -> ResolvedConnector:
        return resolve(parse_reference(reference), self.settings.venvs)

    def attempt(
        self, job_id: str, secrets: list[str] | None = None, rules: dict[str, SecretRules] | None = None
    ) -> AttemptContext:
        secure_home(self.settings.home)
        workdir = private_dirs(self.settings.workspace / job_id / "0")
        return AttemptContext(
            job_id,
            0,
            workdir,
            self.settings.lifecycle,
            secrets or [],
            local_root=self.settings.local_root,
            secret_rules=rules or {},
        )

    # -- single-connector jobs ------------------------------------------------------------

    def spec(self, connector: ResolvedConnector, cancel: threading.Event | None = None) -> ConnectorJobOutput:
        spec = connector_spec(connector, self.launcher, self.settings.workspace, self.settings.lifecycle)
        if spec is not None:
            return ConnectorJobOutput(spec=spec, exit_code=0)
        # No spec: run it once more as a job of its own, so the user sees why.
        return ConnectorJobWorker(self.launcher).spec(connector, self.attempt(new_job_id()), cancel)

    def secrets(self, connector: ResolvedConnector, config: dict[str, Any]) -> list[str]:
        """Secret values of a config: airbyte_secret fields of the spec, and credential-like names."""
        return secret_values(config, self.rules(connector, config))

    def rules(self, connector: ResolvedConnector, config: dict[str, Any]) -> SecretRules:
        """What is secret in a config of this connector (by its spec)."""
        return SecretRules.of(self.spec(connector).spec, config)

    def check(
        self, connector: ResolvedConnector, config: dict[str, Any], cancel: threading.Event | None = None
    ) -> tuple[str, ConnectorJobOutput]:
        return self._connector_job("check", connector, config, cancel)

    def discover(
        self, connector: ResolvedConnector, config: dict[str, Any], cancel: threading.Event | None = None
    ) -> tuple[str, ConnectorJobOutput]:
        return self._connector_job("discover", connector, config, cancel)

    def _connector_job(
        self,
        command: str,
        connector: ResolvedConnector,
        config: dict[str, Any],
        cancel: threading.Event | None,
    ) -> tuple[str, ConnectorJobOutput]:
        job_id = new_job_id()
        # An ad hoc check reports as the source's, whichever side the connector is (see the worker).
        ctx = self.attempt(job_id, self.secrets(connector, config), {"source": self.rules(connector, config)})
        worker = ConnectorJobWorker(self.launcher)
        run = worker.check if command == "check" else worker.discover
        try:
            return job_id, run(ConnectorInput(connector, config), ctx, cancel)
        finally:
            files.forget_configs(ctx.workdir)

    # -- replication ----------------------------------------------------------------------

    def configured_catalog(
        self,
        source: ConnectorInput,
        streams: list[str] | None,
        cancel: threading.Event | None = None,
        prefer_incremental: bool = True,
        destination: ResolvedConnector | None = None,
    ) -> dict[str, Any]:
        """The source's streams, each in the best mode both it and the ``destination`` support."""
        _, output = self.discover(source.connector, source.config, cancel)
        if output.catalog is None:
            failure = output.failure
            why = "no catalog"
            if failure is not None:
                secrets = self.secrets(source.connector, source.config)
                why = most_specific_message(
                    mask_text(failure.message, secrets),
                    mask_text(failure.internal_message or "", secrets),
                    mask_text(failure.stack_trace or "", secrets),
                )
            raise WorkerError(f"discover failed: {why}", source=str(source.connector.ref))
        dest_modes = destination_modes(self.spec(destination).spec) if destination else ALL_DESTINATION_MODES
        return configure_catalog(check_discovered(output.catalog), streams, prefer_incremental, dest_modes)

    def sync(
        self,
        source: ConnectorInput,
        destination: ConnectorInput,
        catalog: dict[str, Any],
        state: list[dict[str, Any]] | None = None,
        mapping: NamespaceMapping | None = None,
        cancel: threading.Event | None = None,
        on_progress: ProgressCallback | None = None,
        on_state: StateSink | None = None,
        reset: bool = False,
    ) -> tuple[str, SyncOutput]:
        mapping = mapping or NamespaceMapping()
        check_mapping(catalog, mapping)
        job_id = new_job_id()
        secret = self.secrets(source.connector, source.config) + self.secrets(
            destination.connector, destination.config
        )
        rules = {
            "source": self.rules(source.connector, source.config),
            "destination": self.rules(destination.connector, destination.config),
        }
        ctx = self.attempt(job_id, secret, rules)
        if reset:
            sync = reset_input(destination, catalog, state, mapping)
        else:
            # Each ad-hoc sync is a new job: its full-refresh streams are read whole.
            state = without_streams(state or [], full_refresh_streams(catalog))
            sync = SyncInput(source, destination, catalog, state, mapping)
        try:
            output = ReplicationWorker(self.launcher).run(sync, ctx, cancel, on_progress, on_state)
        finally:
            files.forget_configs(ctx.workdir)
        return job_id, output
