"""Single-connector jobs (spec, check, discover) against misbehaving connectors.

The connector is tests/connectors/scripted_source.py, told what to do by the steps in its
config (for ``spec``, in its environment). The autouse leak check of tests/conftest.py fails any
test that leaves a process behind; time-dependent behaviour runs with short lifecycle settings.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ferryman.connectors import ResolvedConnector
from ferryman.jobs.failures import FailureOrigin, FailureType
from ferryman.launchers import Launcher
from ferryman.workers import files
from ferryman.workers.connector_job import ConnectorJobWorker
from ferryman.workers.models import AttemptContext, ConnectorInput, ConnectorJobOutput
from tests.conftest import NOT_WAITED_OUT_S

SPEC = {
    "documentationUrl": "https://example.invalid/docs",
    "connectionSpecification": {
        "type": "object",
        "required": ["host"],
        "properties": {"host": {"type": "string"}, "password": {"type": "string"}},
    },
}
CATALOG = {
    "streams": [
        {
            "name": "invoices",
            "json_schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
            "supported_sync_modes": ["full_refresh"],
        }
    ]
}
COMMANDS = ["spec", "check", "discover"]


@dataclass
class Job:
    output: ConnectorJobOutput
    elapsed: float
    workdir: Path

    @property
    def log(self) -> str:
        return (self.workdir / files.LOG_FILE).read_text(encoding="utf-8")


class Jobs:
    """Runs one command of the scripted source through ConnectorJobWorker."""

    def __init__(
        self,
        launcher: Launcher,
        source: ResolvedConnector,
        spec_source: Callable[[list[dict[str, Any]]], ResolvedConnector],
        context: Callable[..., AttemptContext],
    ) -> None:
        self.worker = ConnectorJobWorker(launcher=launcher)
        self.source = source
        self.spec_source = spec_source
        self.context = context

    def run(
        self,
        command: str,
        steps: list[dict[str, Any]] | None = None,
        *,
        config: dict[str, Any] | None = None,
        lifecycle: dict[str, float] | None = None,
        cancel: threading.Event | None = None,
        origin: FailureOrigin = FailureOrigin.SOURCE,
    ) -> Job:
        ctx = self.context(**(lifecycle or {}))
        full_config = dict(config or {})
        if steps is not None and command != "spec":
            full_config["steps"] = steps
        started = time.monotonic()
        if command == "spec":
            connector = self.spec_source(steps) if steps is not None else self.source
            output = self.worker.spec(connector, ctx, cancel)
        elif command == "check":
            output = self.worker.check(ConnectorInput(self.source, full_config), ctx, cancel, origin=origin)
        else:
            output = self.worker.discover(ConnectorInput(self.source, full_config), ctx, cancel)
        return Job(output, time.monotonic() - started, ctx.workdir)


@pytest.fixture
def jobs(
    launcher: Launcher,
    source: ResolvedConnector,
    spec_source: Callable[[list[dict[str, Any]]], ResolvedConnector],
    context: Callable[..., AttemptContext],
) -> Jobs:
    return Jobs(launcher, source, spec_source, context)


def wanted(command: str, output: ConnectorJobOutput) -> Any:
    """What the command exists to produce."""
    return {"spec": output.spec, "check": output.check_succeeded, "discover": output.catalog}[command]


def cancel_once(marker: Path, cancel: threading.Event) -> threading.Thread:
    """Sets ``cancel`` as soon as the connector has created ``marker`` (it is then hanging)."""

    def watch() -> None:
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        cancel.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


# -- connectors that behave ----------------------------------------------------------------


def test_spec_returns_the_spec(jobs: Jobs) -> None:
    job = jobs.run("spec", [{"log": "printing the spec"}, {"spec": SPEC}])

    assert job.output.spec == SPEC
    assert job.output.failures == []
    assert job.output.exit_code == 0
    assert "printing the spec" in job.log


def test_check_that_succeeds(jobs: Jobs) -> None:
    job = jobs.run("check", config={"host": "db.example"})

    assert job.output.check_succeeded is True
    assert job.output.failures == []
    assert job.output.updated_config is None


def test_check_that_answers_failed_is_not_a_job_failure(jobs: Jobs) -> None:
    steps = [{"connection_status": "FAILED", "message": "password authentication failed"}]
    job = jobs.run("check", steps)

    assert job.output.check_succeeded is False
    assert job.output.check_message == "password authentication failed"
    assert job.output.failures == []
    assert job.output.failure is None


def test_discover_returns_the_catalog(jobs: Jobs) -> None:
    job = jobs.run("discover", [{"catalog": CATALOG}])

    assert job.output.catalog == CATALOG
    assert job.output.failures == []


def test_a_control_message_in_check_updates_the_config(jobs: Jobs) -> None:
    new_config = {"host": "db.example", "refresh_token": "rotated"}
    steps = [{"control_config": new_config}, {"connection_status": "SUCCEEDED"}]
    job = jobs.run("check", steps, config={"host": "db.example"})

    assert job.output.check_succeeded is True
    assert job.output.updated_config == new_config


def test_the_config_file_is_private_and_gone_when_the_job_ends(jobs: Jobs, tmp_path: Path) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    modes: list[int] = []

    def look_while_it_runs() -> None:
        deadline = time.monotonic() + 10
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        modes.extend(stat.S_IMODE(os.stat(p).st_mode) for p in tmp_path.rglob(files.SOURCE_CONFIG))
        release.touch()

    watcher = threading.Thread(target=look_while_it_runs, daemon=True)
    watcher.start()
    steps = [{"touch": str(started)}, {"wait_for_file": str(release)}, {"connection_status": "SUCCEEDED"}]
    job = jobs.run("check", steps, config={"password": "hunter2"})
    watcher.join()

    assert job.output.check_succeeded is True
    # In a container, the file is also mounted on an empty file of its working directory.
    assert modes and set(modes) == {0o600}, [oct(m) for m in modes]
    assert not (job.workdir / files.SOURCE_CONFIG).exists(), "the config (with its secrets) was left"


def test_a_grandchild_in_its_own_session_holding_stdout_does_not_hold_up_discover(
    jobs: Jobs, tmp_path: Path, launcher_kind: str
) -> None:
    # Bound: the pytest timeout (the daemon sleeps 300 s); the group kill cannot reach it.
    pidfile = tmp_path / "daemon.pid"
    job = jobs.run("discover", [{"spawn_daemon": 300, "pidfile": str(pidfile)}, {"catalog": CATALOG}])

    assert job.output.catalog == CATALOG
    assert job.output.failures == []
    if launcher_kind == "local":
        assert "in a session of its own still held its std" in job.log
        assert f"killed {pidfile.read_text()}" in job.log


# -- connectors that fail --------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("failure_type", "retryable"),
    [(FailureType.CONFIG_ERROR, False), (FailureType.SYSTEM_ERROR, True)],
)
def test_a_trace_error_is_the_failure(
    jobs: Jobs, command: str, failure_type: FailureType, retryable: bool
) -> None:
    error = {
        "failure_type": failure_type.value,
        "message": f"{command} could not reach the API",
        "internal_message": "ConnectionRefusedError",
        "stack_trace": "Traceback (most recent call last):\nConnectionRefusedError",
    }
    job = jobs.run(command, [{"trace_error": error}, {"exit": 1}])

    assert wanted(command, job.output) is None
    assert len(job.output.failures) == 1, job.output.failures
    failure = job.output.failures[0]
    assert (failure.origin, failure.type) == (FailureOrigin.SOURCE, failure_type)
    assert failure.message == f"{command} could not reach the API"
    assert failure.stack_trace == error["stack_trace"]
    assert failure.retryable is retryable
    assert failure.metadata.get("connector_command") == command


def test_a_destination_check_failure_has_the_destination_origin(jobs: Jobs) -> None:
    error = {"failure_type": "config_error", "message": "bucket not found"}
    job = jobs.run("check", [{"trace_error": error}, {"exit": 1}], origin=FailureOrigin.DESTINATION)

    assert job.output.failure is not None
    assert job.output.failure.origin is FailureOrigin.DESTINATION
    assert job.output.failure.message == "bucket not found"


@pytest.mark.parametrize("command", COMMANDS)
def test_a_silent_crash_is_reported_with_the_last_stderr_lines(jobs: Jobs, command: str) -> None:
    job = jobs.run(command, [{"stderr": "traceback line", "repeat": 30}, {"exit": 1}])

    assert wanted(command, job.output) is None
    assert job.output.exit_code == 1
    (failure,) = job.output.failures
    assert (failure.origin, failure.type) == (FailureOrigin.SOURCE, FailureType.SYSTEM_ERROR)
    assert "code 1" in failure.message
    assert "traceback line 29" in failure.message
    assert "traceback line 28" in failure.message
    assert failure.retryable
    # Everything went to the attempt log, not only the tail.
    assert "traceback line 0" in job.log


# -- connectors that will not go --------------------------------------------------------------


def test_a_connector_hanging_after_its_spec_with_stdout_closed_gets_sigterm(jobs: Jobs) -> None:
    steps = [{"spec": SPEC}, {"close_stdout": True}, {"hang": True}]
    job = jobs.run("spec", steps, lifecycle={"exit_grace_s": 0.5})

    assert job.output.spec == SPEC
    assert job.output.failures == []
    assert "SIGTERM" in job.log
    assert job.elapsed < NOT_WAITED_OUT_S


def test_a_connector_ignoring_sigterm_after_its_spec_is_killed(jobs: Jobs) -> None:
    steps = [{"spec": SPEC}, {"close_stdout": True}, {"ignore_sigterm": True}, {"hang": True}]
    job = jobs.run("spec", steps, lifecycle={"exit_grace_s": 0.5, "term_grace_s": 0.5})

    assert job.output.spec == SPEC
    assert "SIGKILL" in job.log
    assert job.elapsed < NOT_WAITED_OUT_S


def test_a_connector_hanging_after_its_spec_with_stdout_open_gets_sigterm(jobs: Jobs) -> None:
    cancel = threading.Event()
    safety_net = threading.Timer(2 * NOT_WAITED_OUT_S, cancel.set)  # the job must not hang the test suite
    safety_net.start()
    try:
        job = jobs.run(
            "spec", [{"spec": SPEC}, {"hang": True}], lifecycle={"exit_grace_s": 0.5}, cancel=cancel
        )
    finally:
        safety_net.cancel()

    assert job.output.spec == SPEC
    assert job.output.failures == []
    assert job.elapsed < NOT_WAITED_OUT_S


def test_a_cancel_that_comes_as_the_connector_starts_stops_it_at_once(jobs: Jobs) -> None:
    # The stop reaches the launcher while the connector is still starting (for a container: before
    # the engine has created it). It must stop it all the same, not wait out the 30 s cancel grace.
    cancel = threading.Event()
    cancel.set()
    job = jobs.run("discover", [{"hang": True}], cancel=cancel)

    failure = job.output.failure
    assert failure is not None and failure.type is FailureType.MANUAL_CANCELLATION
    assert job.output.catalog is None
    assert job.elapsed < NOT_WAITED_OUT_S


@pytest.mark.parametrize("ignores_sigterm", [False, True], ids=["dies", "ignores-sigterm"])
def test_cancel_of_a_hanging_discover(jobs: Jobs, tmp_path: Path, ignores_sigterm: bool) -> None:
    marker = tmp_path / "discover-is-hanging"
    steps = [{"ignore_sigterm": True}] if ignores_sigterm else []
    steps += [{"touch": str(marker)}, {"hang": True}]
    cancel = threading.Event()
    watcher = cancel_once(marker, cancel)
    job = jobs.run("discover", steps, cancel=cancel, lifecycle={"cancel_grace_s": 0.5})
    watcher.join()

    assert marker.exists()
    assert job.output.catalog is None
    failure = job.output.failure
    assert failure is not None
    assert (failure.type, failure.retryable) == (FailureType.MANUAL_CANCELLATION, False)
    assert ("SIGKILL" in job.log) is ignores_sigterm
    assert job.elapsed < NOT_WAITED_OUT_S


def test_a_check_that_never_answers_is_stopped_at_its_timeout(jobs: Jobs) -> None:
    job = jobs.run("check", [{"hang": True}], lifecycle={"check_timeout_s": 0.5, "cancel_grace_s": 0.5})

    assert job.output.check_succeeded is None
    failure = job.output.failure
    assert failure is not None
    assert (failure.type, failure.retryable) == (FailureType.SYSTEM_ERROR, True)
    assert "no answer within 0.5s" in failure.message
    assert "raise FERRYMAN_CHECK_TIMEOUT_S" in failure.message  # what to do about it
    assert "stopping the check (no answer within 0.5s): SIGTERM" in job.log
