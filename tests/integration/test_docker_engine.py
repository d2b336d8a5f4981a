"""The engine with connectors in containers: a real Docker engine, the test images, a real store.

Needs a Docker engine and the images of tests/images/build.py: skipped with the reason when they
are missing, failed instead when CI=true.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import duckdb
import pytest

from ferryman.connectors.docker import run_docker
from ferryman.engines.local import LocalEngine
from ferryman.jobs.states import AttemptStatus, JobStatus
from ferryman.launchers import ConnectorProcess, DockerLauncher, DockerSettings, LaunchRequest
from ferryman.launchers.docker import SCRATCH_PREFIX, ResourceLimits
from ferryman.settings import Settings
from ferryman.store import open_store
from ferryman.store.base import JobStore
from tests import docker_support
from tests.conftest import FAKER_REF, TAG, short_lifecycle, tagged_processes, watchdogs_of
from tests.images.build import image
from tests.integration.test_engine import service_for, start_engine, wait_for_state


@pytest.fixture
def local_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The host dir containers see as /local (their DuckDB files land there)."""
    path = tmp_path / "local"
    monkeypatch.setenv("FERRYMAN_DOCKER_LOCAL_ROOT", str(path))
    return path


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return open_store(f"sqlite:///{tmp_path / 'ferryman.db'}")


def tables(database: Path) -> dict[str, int]:
    with duckdb.connect(str(database), read_only=True) as db:
        names = [row[0] for row in db.execute("select table_name from information_schema.tables").fetchall()]
        return {name: int(db.execute(f'select count(*) from "{name}"').fetchall()[0][0]) for name in names}


def store_containers(engine: LocalEngine) -> list[str]:
    return docker_support.containers(f"io.ferryman.store={engine.store_label}")


@pytest.mark.slow
def test_faker_in_a_container_into_duckdb_in_a_container_gives_the_local_row_counts(
    store: JobStore, tmp_path: Path, local_root: Path, venvs_dir: Path, request: pytest.FixtureRequest
) -> None:
    docker_support.require_docker("source-faker", "destination-duckdb")
    request.getfixturevalue(
        "faker"
    )  # faker from PyPI in the session's venvs, once Docker is known to be there
    home = tmp_path / "home"
    home.mkdir()
    (home / "venvs").symlink_to(venvs_dir)  # the session's faker venv, installed once
    service = service_for(store, home)
    config = {"count": 500, "seed": 7}
    service.create_actor("source", "faker-local", FAKER_REF, config)
    service.create_actor("source", "faker-docker", f"docker:{image('source-faker')}", config)
    service.create_actor(
        "destination", "duck-local", "builtin:destination-duckdb", {"path": str(tmp_path / "local.duckdb")}
    )
    service.create_actor(
        "destination",
        "duck-docker",
        f"docker:{image('destination-duckdb')}",
        {"path": "/local/docker.duckdb"},
    )
    service.create_connection("local", "faker-local", "duck-local")
    service.create_connection("docker", "faker-docker", "duck-docker")

    jobs = [service.enqueue_replication("local"), service.enqueue_replication("docker")]
    finished = service._engine().run_jobs([job.id for job in jobs], timeout_s=300)

    assert [job.status for job in finished] == [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED]
    local, docker = tables(tmp_path / "local.duckdb"), tables(local_root / "docker.duckdb")
    assert local == docker
    assert {"users", "products", "purchases"} <= set(docker) and docker["users"] == 500
    assert store_containers(service._engine()) == []


def engine_env(tmp_path: Path, local_root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FERRYMAN_HOME": str(tmp_path / "home"),
        "FERRYMAN_ENGINE_HEARTBEAT_S": "0.2",
        "FERRYMAN_RETRY_BACKOFF_MIN_S": "0",
        "FERRYMAN_DOCKER_LOCAL_ROOT": str(local_root),
    }


@pytest.mark.slow
def test_sigkill_of_an_engine_mid_sync_leaves_no_container_and_loses_no_record(
    store: JobStore, tmp_path: Path, local_root: Path
) -> None:
    docker_support.require_docker("source-bench", "destination-duckdb")
    url = store.url
    home = tmp_path / "home"
    service = service_for(store, home, stale_after_s=1.0)
    service.create_actor(
        "source", "bench", f"docker:{image('source-bench')}", {"count": 1_000_000, "state_every": 1000}
    )
    service.create_actor(
        "destination", "duck", f"docker:{image('destination-duckdb')}", {"path": "/local/big.duckdb"}
    )
    service.create_connection("big", "bench", "duck")
    connection = store.get_connection("big")
    job = service.enqueue_replication("big")

    doomed = start_engine(url, engine_env(tmp_path, local_root))
    wait_for_state(store, connection.id, 120, "the first engine never committed a state")
    for watchdog in watchdogs_of(doomed.pid):  # killed with it (kill -9 of everything, a reboot):
        watchdog.kill()  # its containers are left for the next engine's recovery
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()
    orphans = docker_support.containers("io.ferryman.attempt=0")
    assert orphans, "the killed engine's containers should still be there for the next engine to remove"

    (finished,) = service._engine().run_jobs([job.id], timeout_s=180)

    assert finished.status is JobStatus.SUCCEEDED
    first, second = store.list_attempts(job.id)
    assert first.status is AttemptStatus.FAILED and second.status is AttemptStatus.SUCCEEDED
    with duckdb.connect(str(local_root / "big.duckdb"), read_only=True) as db:
        total, distinct = db.execute('select count(*), count(distinct id) from "stream_0"').fetchall()[0]
    assert (total, distinct) == (1_000_000, 1_000_000)
    assert store_containers(service._engine()) == []
    # The killed engine's containers' working directories went with its attempt's config files.
    assert list((home / "workspace").glob(f"*/*/{SCRATCH_PREFIX}*")) == []
    wait_for_exit_of_tagged_clients()


def wait_for_exit_of_tagged_clients(timeout_s: float = 30) -> None:
    """docker run clients end once their container is removed; give them the time to notice."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(
        proc.info["name"] == "docker" for proc in tagged_processes(os.environ[TAG])
    ):
        time.sleep(0.1)


def wait_for_container(name: str) -> None:
    """The docker client asks the engine to create its container: wait until it exists."""
    deadline = time.monotonic() + 30
    while name not in docker_support.containers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert name in docker_support.containers(), f"container {name} never appeared"


def hanging_request(tmp_path: Path, job_id: str) -> LaunchRequest:
    connector = docker_support.docker_connector(
        "scripted-source", {"SCRIPTED_SPEC_STEPS": json.dumps([{"hang": True}])}
    )
    workdir = tmp_path / "attempt"
    workdir.mkdir(exist_ok=True)
    return LaunchRequest(connector, ["spec"], workdir, "spec", job_id=job_id, attempt=0, job_type="spec")


ORPHAN_MAKER = """
import json, pickle, sys, time
from ferryman.launchers import DockerLauncher, DockerSettings
request = pickle.loads(bytes.fromhex(sys.argv[1]))
process = DockerLauncher(DockerSettings(user=sys.argv[2])).launch(request)
print(json.dumps({"name": process.name, "client": process.pid}), flush=True)
time.sleep(600)
"""


def test_an_engine_starting_removes_containers_whose_owner_died(store: JobStore, tmp_path: Path) -> None:
    import pickle

    request = hanging_request(tmp_path, "adhoc-1")
    maker = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_MAKER, pickle.dumps(request).hex(), docker_support.HOST_USER],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert maker.stdout is not None
    started = json.loads(maker.stdout.readline())
    wait_for_container(started["name"])
    for watchdog in watchdogs_of(maker.pid):  # gone too: the next engine is the safety net
        watchdog.kill()
    maker.kill()  # an ad-hoc run killed with SIGKILL: nobody stops its container
    maker.wait()
    assert started["name"] in docker_support.containers()

    engine = LocalEngine(store, Settings(home=tmp_path / "home"))
    engine.tick()
    engine.wait_for_sweep()  # the sweep runs beside the engine's first pass

    assert started["name"] not in docker_support.containers()
    os.killpg(started["client"], signal.SIGKILL)  # its docker client, orphaned in its own session
    wait_for_exit_of_tagged_clients()


def test_an_engine_starting_removes_its_store_containers_whose_attempt_is_over(
    store: JobStore, tmp_path: Path
) -> None:
    engine = LocalEngine(store, Settings(home=tmp_path / "home"))
    labels = {"io.ferryman.store": engine.store_label}
    process = DockerLauncher(DockerSettings(user=docker_support.HOST_USER, labels=labels)).launch(
        hanging_request(tmp_path, "4242")
    )
    other = DockerLauncher(
        DockerSettings(user=docker_support.HOST_USER, labels={"io.ferryman.store": "another-store"})
    ).launch(hanging_request(tmp_path, "4242"))
    try:
        wait_for_container(process.name)
        wait_for_container(other.name)
        engine.tick()  # job 4242 has no running attempt in this store; the other store's is not ours
        engine.wait_for_sweep()

        assert process.name not in docker_support.containers()
        assert process.wait(30) is not None
        assert other.name in docker_support.containers()
    finally:
        for proc in (process, other):
            proc.kill()
            proc.kill_leftovers()
            proc.wait(30)
            proc.close()


def test_limits_labels_and_user_reach_the_engine(tmp_path: Path) -> None:
    settings = DockerSettings(
        user=docker_support.HOST_USER, limits=ResourceLimits("256m", "128m", "0.5"), network="none"
    )
    process = DockerLauncher(settings).launch(hanging_request(tmp_path, "77"))
    try:
        wait_for_container(process.name)
        inspected = subprocess.run(
            ["docker", "inspect", "--format", "{{json .}}", process.name], capture_output=True, text=True
        )
        container = json.loads(inspected.stdout)
    finally:
        process.kill()
        process.kill_leftovers()
        process.wait(30)
        process.close()

    host = container["HostConfig"]
    assert (host["Memory"], host["MemoryReservation"], host["NanoCpus"]) == (
        256 << 20,
        128 << 20,
        500_000_000,
    )
    assert host["AutoRemove"] is True and host["Init"] is True and host["NetworkMode"] == "none"
    assert container["Config"]["User"] == docker_support.HOST_USER
    assert container["Config"]["WorkingDir"] == "/data/77/0"
    labels = container["Config"]["Labels"]
    assert labels["io.ferryman.job-id"] == "77" and labels["io.ferryman.role"] == "spec"
    assert process.name not in docker_support.containers()


def test_each_image_has_its_own_spec_fetched_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker_support.require_docker("source-faker", "scripted-source")
    from ferryman.connectors import parse_reference, resolve
    from ferryman.launchers import ConnectorLauncher
    from ferryman.workers import specs
    from ferryman.workers.specs import SPEC_CACHE, connector_spec

    monkeypatch.setattr(specs, "_memory", {})  # what earlier tests of this process fetched
    venvs = tmp_path / "home" / "venvs"
    faker = resolve(parse_reference(f"docker:{image('source-faker')}"), venvs)
    scripted = resolve(parse_reference(f"docker:{image('scripted-source')}"), venvs)
    launcher = ConnectorLauncher(DockerSettings(user=docker_support.HOST_USER))

    faker_spec = connector_spec(faker, launcher, tmp_path / "workspace", short_lifecycle())
    scripted_spec = connector_spec(scripted, launcher, tmp_path / "workspace", short_lifecycle())

    assert faker_spec is not None and scripted_spec is not None
    assert "count" in faker_spec["connectionSpecification"]["properties"]
    assert "steps" in scripted_spec["connectionSpecification"]["properties"]
    assert faker.cache_dir is not None and (faker.cache_dir / SPEC_CACHE).is_file()
    assert faker.cache_dir.parent == tmp_path / "home" / "images"

    class NoLaunches:
        def launch(self, request: LaunchRequest) -> ConnectorProcess:
            raise AssertionError("the spec should come from the image's cache, not a container")

    monkeypatch.setattr(specs, "_memory", {})  # a new process: only the cache on disk is left
    again = resolve(parse_reference(f"docker:{image('source-faker')}"), venvs)
    assert connector_spec(again, NoLaunches(), tmp_path / "workspace", short_lifecycle()) == faker_spec


def test_a_reset_clears_the_destination_when_the_source_image_is_gone(
    store: JobStore, tmp_path: Path, local_root: Path
) -> None:
    """A reset runs the empty source, never the source's image: before, it pulled that image all
    the same, so a source image removed (or a registry out of reach) failed the reset, three
    attempts long, and left the destination's data and the state as they were."""
    docker_support.require_docker("scripted-source")
    gone = f"ferryman-test/removed-source:{uuid.uuid4().hex[:12]}"  # pulled from nowhere: fails
    assert run_docker("tag", image("scripted-source"), gone).returncode == 0
    service = service_for(store, tmp_path / "home")
    steps = [{"records": 4}, {"state": {"name": "users"}}]
    service.create_actor("source", "src", f"docker:{gone}", {"read_steps": steps})
    out = tmp_path / "out"
    service.create_actor("destination", "dst", "builtin:destination-jsonl", {"path": str(out)})
    conn = service.create_connection("conn", "src", "dst", full_refresh=True)
    try:
        synced = service.run(service.enqueue_replication(conn), timeout_s=120)
    finally:
        assert run_docker("rmi", gone).returncode == 0
    assert synced.status is JobStatus.SUCCEEDED
    assert len((out / "users.jsonl").read_text().splitlines()) == 4

    reset = service.run(service.enqueue_replication(conn, reset=True), timeout_s=120)

    assert reset.status is JobStatus.SUCCEEDED, service.job_document(reset.id)
    assert (out / "users.jsonl").read_text() == ""
    assert [s["stream"]["stream_state"] for s in store.get_state(conn.id)] == [None]


def test_a_container_sees_only_the_files_it_is_given_not_the_other_sides_config(tmp_path: Path) -> None:
    """The source of a sync runs beside the destination's config (its database password) and the
    attempt's log. Before, the whole attempt dir was mounted into both containers: any source
    image could read the destination's credentials, and write lines into the log."""
    connector = docker_support.docker_connector("scripted-source")
    workdir = tmp_path / "attempt"
    workdir.mkdir(mode=0o700)
    (workdir / "source_config.json").write_text(json.dumps({"steps": [{"hang": True}]}))
    (workdir / "source_catalog.json").write_text(json.dumps({"streams": []}))
    (workdir / "destination_config.json").write_text(json.dumps({"password": "db-password-42"}))
    (workdir / "logs.log").write_text("the attempt's log\n")
    args = ["read", "--config", str(workdir / "source_config.json")]
    args += ["--catalog", str(workdir / "source_catalog.json")]
    request = LaunchRequest(connector, args, workdir, "source", job_id="91", attempt=0, job_type="sync")
    process = DockerLauncher(DockerSettings(user=docker_support.HOST_USER)).launch(request)
    try:
        wait_for_container(process.name)
        listed = run_docker("exec", process.name, "ls", "-A", "/data/91/0")
        peek = run_docker("exec", process.name, "cat", "/data/91/0/destination_config.json")
        scratch = run_docker("exec", process.name, "touch", "/data/91/0/scratch-file")
    finally:
        process.kill()
        process.kill_leftovers()
        process.wait(30)
        process.close()

    assert listed.returncode == 0, listed.stderr
    assert sorted(listed.stdout.split()) == ["source_catalog.json", "source_config.json"]
    assert peek.returncode != 0 and "db-password-42" not in peek.stdout
    assert scratch.returncode == 0, scratch.stderr  # its working directory is writable, as before
    assert sorted(p.name for p in workdir.iterdir()) == [  # and gone with the container
        "destination_config.json",
        "logs.log",
        "source_catalog.json",
        "source_config.json",
    ]
