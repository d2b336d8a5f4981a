"""Chaos: `connections sync` killed at random moments, then checked for what the kill left behind.

    python benchmarks/chaos.py [--seed 1] [--rounds 20] [--round N]
                               [--destination duckdb|postgres|jsonl|any]
                               [--mode append|append_dedup|overwrite|any]
                               [--target ferryman|source|destination|watchdog|...|any]
                               [--signal KILL|TERM|INT|any] [--home fresh|kept] [--store sqlite|postgresql+psycopg://.../DB]
                               [--docker none|source|destination|both|any]
                               [--max-kills 2] [--minutes M] [--work DIR] [--verbose]
                               [--engine local|temporal] [--workers 2]

Each round (its own RNG, seeded by ``--seed`` and the round's number, so ``--round N`` replays one
round of a fresh-home run) builds a connection of builtin:source-bench (random streams, count,
record size and state interval) into the chosen built-in destination, incremental for ``append``
and ``append_dedup``, full refresh for ``overwrite``, and runs ``ferryman connections sync`` as a
user does: once undisturbed with a smaller count (so there is an old table, and a state to resume
from), then with the full count while the harness kills a random target with a random signal at a
random moment, up to ``--max-kills`` commands in a row, then again until a sync succeeds.

Targets: the ``ferryman`` process, the source, the destination, the watchdog, or several at once;
signals: SIGKILL, SIGTERM, SIGINT. With ``--docker``, the source and/or the destination run as
``docker:`` connectors (the test images of the built-ins, tests/images/build.py, built when
missing; a destination in Docker is duckdb or jsonl, writing under ``/local``): ``source`` and
``destination`` then name the ``docker run`` client, and ``source-container`` and
``destination-container`` the container itself (``docker kill --signal``). Moments: as soon as
the target runs, after the store holds the k-th new saved state, after the attempt's committed
records pass a fraction of the total, or at a random wall offset within the sync's expected
duration.

What is checked, one line per violation (docs/reliability.md is the rule book):

- leftovers: no process of the round (every descendant of each command, and anything whose command
  line names the round's home) still runs once the round's commands have ended, nor any container
  of the round (one a command's ``docker run`` named, or one labelled with the round's store);
- wedged: no job pending, running or incomplete after the successful sync; a command that hangs;
- data: the destination holds ids 1..count of each stream, each once, with the source's values,
  for ``append_dedup`` and ``overwrite``; for ``append`` each at least once, twice only after a
  SIGKILLed ``ferryman`` or a killed destination (its client or its container): the two cases the
  fault table allows;
- state ahead: after every command the saved state of each stream covers only ids stored;
- overwrite: a command that fails leaves the previous table exactly as it was, or (the stream was
  complete when the kill came) the new one whole, never a part;
- told: an attempt running when its ``ferryman``, source or destination was killed ends failed
  (its job failed or cancelled when ``ferryman`` itself was hit), never succeeded.

Settings: ``FERRYMAN_CANCEL_GRACE_S=2``, ``FERRYMAN_RETRY_BACKOFF_MIN_S=0``, the rest defaults.
With ``--engine temporal`` the jobs run on the Temporal engine: one home for the run (its store
SQLite, or ``--store``), a ``temporal server start-dev`` keeping its history in a file
(``--db-filename``) and ``--workers`` ``ferryman worker --engine temporal`` processes. The chaos
sync is ``connections sync`` in the foreground or ``--detach``; the targets are ``worker`` (the
one running the attempt: SIGKILL, SIGTERM or SIGINT, a replacement started 0-4 s later),
``source``, ``destination``, ``temporal`` (the dev server, SIGKILL, restarted 0-4 s later on its
ports and db file), ``cli`` (the foreground command) and ``cancel`` (``jobs cancel``). After the
kills the harness brings everything up and waits for the round's jobs to end, then checks, besides
the above: no job with two running attempts, nor the round's sources alive under two workers for
over 5 s, nor an attempt begun before the one before it ended (twice-at-once); no job still live
240 s after everything is up (wedged); a job that ended cancelled still cancelled, with no new
attempt, at the end of the run (cancelled-ran); no connector left once no job is live, nor any
process of a worker once the workers stop (SIGTERM) at the end (leftover).

Not a test: randomness is the point; each violation found is reduced to a test in tests/e2e/.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# benchmarks/queue.py would stand for the standard library's queue (psycopg imports it).
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests.images

import psutil  # noqa: E402

FERRYMAN = [sys.executable, "-m", "ferryman"]
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
GRACE_S = 2
COMMAND_DEADLINE_S = 240
FILLER = b"abcdefghijklmnopqrstuvwxyz0123456789".decode()
SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT}
TARGETS = ["ferryman", "source", "destination", "watchdog", "ferryman+watchdog", "source+destination", "all"]
CONTAINER_TARGETS = {"source": "source-container", "destination": "destination-container"}
DOCKER = ["none", "source", "destination", "both"]
DOCKER_DESTINATIONS = ["duckdb", "jsonl"]  # the built-ins with a test image
ROLES = {  # the processes a target names
    "ferryman+watchdog": ["ferryman", "watchdog"],
    "source+destination": ["source", "destination"],
    "all": ["watchdog", "source", "destination", "ferryman"],
}
TRIGGERS = ["start", "state", "progress", "wall"]
MODES = ["append", "append_dedup", "overwrite"]
DESTINATIONS = ["duckdb", "postgres", "jsonl"]


@dataclass
class Kill:
    target: str
    signal: str
    trigger: str
    detail: str
    fired: bool = False
    landed: list[str] = field(default_factory=list)  # the targets alive when signalled
    attempt: tuple[int, int] | None = None  # (job, attempt number) running at the kill
    source_running: bool = False  # the source still ran at the kill: the sync was not ending
    wall_time: float = 0.0  # time.time() at the kill, to compare with the attempt's end
    at_s: float = 0.0


@dataclass
class Totals:
    rounds: int = 0
    commands: int = 0
    kills: collections.Counter[str] = field(default_factory=collections.Counter)
    missed: int = 0
    violations: collections.Counter[str] = field(default_factory=collections.Counter)
    duplicates_allowed: int = 0
    seconds: float = 0.0


# -- the store, read directly (never through a command: a poll must not recover anything) ------


class Store:
    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self.url = url
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self.sa = sa

    def rows(self, sql: str, **params: Any) -> list[Any]:
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(self.sa.text(sql), params))
        except Exception:  # the store is being created or migrated: nothing yet
            return []

    def saved(self, connection: str) -> dict[str, int]:
        """The last id each stream's saved state covers."""
        found = self.rows(
            "SELECT s.state FROM connection_state s JOIN connections c ON c.id = s.connection_id"
            " WHERE c.name = :name",
            name=connection,
        )
        if not found:
            return {}
        state = found[0][0]
        state = json.loads(state) if isinstance(state, str) else state
        result = {}
        for message in state if isinstance(state, list) else [state]:
            stream = message.get("stream") or {}
            name = (stream.get("stream_descriptor") or {}).get("name")
            value = stream.get("stream_state") or {}
            if name is not None and isinstance(value, dict) and isinstance(value.get("id"), int):
                result[name] = value["id"]
        return result

    def running_attempt(self, connection: str) -> tuple[int, int, int] | None:
        """(job id, attempt number, records committed so far) of the connection's running attempt."""
        found = self.rows(
            "SELECT a.job_id, a.number, a.id FROM attempts a JOIN jobs j ON j.id = a.job_id"
            " JOIN connections c ON j.scope = CAST(c.id AS VARCHAR(255))"
            " WHERE c.name = :name AND a.status = 'running' ORDER BY a.id DESC",
            name=connection,
        )
        if not found:
            return None
        job, number, attempt = found[0]
        committed = self.rows(
            "SELECT COALESCE(SUM(records_committed), 0) FROM stream_stats WHERE attempt_id = :a", a=attempt
        )
        return int(job), int(number), int(committed[0][0]) if committed else 0

    def close(self) -> None:
        self.engine.dispose()


# -- the destination's rows -------------------------------------------------------------------


class Rows:
    """Reads (id, name, payload) of each stream from the round's destination."""

    def __init__(self, kind: str, where: str, inside: str | None = None) -> None:
        self.kind, self.where = kind, where
        self.inside = inside  # the path a destination in Docker is given (under /local)

    def config(self) -> dict[str, Any]:
        if self.kind in ("duckdb", "jsonl"):
            return {"path": self.inside or self.where}
        database, schema = self.where.split("/")
        return {"host": PG["host"], "port": PG["port"], "username": PG["user"], "database": database,
                "schema": schema}  # fmt: skip

    def read(self, streams: list[str]) -> dict[str, list[tuple[int, str, str]]] | None:
        """Rows per stream (a missing table: none); None when the store cannot be read now."""
        try:
            if self.kind == "duckdb":
                return self._duckdb(streams)
            if self.kind == "jsonl":
                return self._jsonl(streams)
            return self._postgres(streams)
        except Exception as error:  # a destination still holds the file: try later
            if "lock" in str(error).lower():
                return None
            raise

    def _duckdb(self, streams: list[str]) -> dict[str, list[tuple[int, str, str]]]:
        import duckdb

        if not Path(self.where).exists():
            return {name: [] for name in streams}
        with duckdb.connect(self.where, read_only=True) as db:
            tables = {row[0] for row in db.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
            return {
                name: [tuple(r) for r in db.execute(f'SELECT id, name, payload FROM "{name}"').fetchall()]
                if name in tables
                else []
                for name in streams
            }

    def _jsonl(self, streams: list[str]) -> dict[str, list[tuple[int, str, str]]]:
        result = {}
        for name in streams:
            path = Path(self.where) / f"{name}.jsonl"
            lines = path.read_text().splitlines() if path.exists() else []
            result[name] = [(d["id"], d["name"], d["payload"]) for d in map(json.loads, lines)]
        return result

    def _postgres(self, streams: list[str]) -> dict[str, list[tuple[int, str, str]]]:
        import psycopg

        database, schema = self.where.split("/")
        with psycopg.connect(dbname=database, **PG) as conn:  # type: ignore[arg-type]
            conn.execute("SET lock_timeout = '200ms'")
            result = {}
            for name in streams:
                exists = conn.execute("SELECT to_regclass(%s)", (f'"{schema}"."{name}"',)).fetchone()
                if not exists or exists[0] is None:
                    result[name] = []
                    continue
                rows = conn.execute(f'SELECT id, name, payload FROM "{schema}"."{name}"').fetchall()
                result[name] = [tuple(r) for r in rows]
            conn.rollback()
            return result


def payload_ok(record_id: int, name: str, payload: str) -> bool:
    return name == f"record-{record_id}" and (FILLER * (len(payload) // len(FILLER) + 1)).startswith(payload)


def compare(rows: list[tuple[int, str, str]], count: int, payload_len: int | None) -> dict[str, Any]:
    counts = collections.Counter(r[0] for r in rows)
    return {
        "missing": [i for i in range(1, count + 1) if counts[i] == 0],
        "twice": sorted(i for i, n in counts.items() if n > 1),
        "foreign": sorted(i for i in counts if not isinstance(i, int) or not 1 <= i <= count),
        "bad_values": [
            r[0] for r in rows if not payload_ok(*r) or (payload_len is not None and len(r[2]) != payload_len)
        ],
    }


def span(ids: list[int]) -> str:
    """A short text for a list of ids: its size and first and last."""
    if not ids:
        return "none"
    return f"{len(ids)} ({ids[0]}..{ids[-1]})" if len(ids) > 1 else f"1 ({ids[0]})"


# -- one command, attacked or not ---------------------------------------------------------------


class Command:
    """A `ferryman` command whose descendants are watched (and recorded) while it runs."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.me = psutil.Process(self.process.pid)
        self.seen: dict[int, psutil.Process] = {}
        self.containers: dict[str, list[str]] = collections.defaultdict(list)  # role -> names started
        self._named: set[int] = set()  # the `docker run` clients whose container is noted
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()
        self.output: tuple[str, str] = ("", "")

    def _watch(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                for child in self.me.children(recursive=True):
                    self.seen.setdefault(child.pid, child)
                    if child.pid not in self._named:  # a fork may not have exec'd `docker` yet
                        self._name_container(child)
            self._stop.wait(0.02)

    def _name_container(self, process: psutil.Process) -> None:
        """Note the container a `docker run` client starts, under its role."""
        with contextlib.suppress(psutil.Error):
            argv = process.cmdline()
            if not is_docker_run(argv):
                return
            self._named.add(process.pid)
            name = argv[argv.index("--name") + 1] if "--name" in argv else None
            role = docker_role(argv)
            if name and role and name not in self.containers[role]:
                self.containers[role].append(name)

    def role(self, process: psutil.Process) -> str:
        try:
            line = " ".join(process.cmdline())
        except psutil.Error:
            return "gone"
        if "_watchdog_main" in line:
            return "watchdog"
        with contextlib.suppress(psutil.Error):
            argv = process.cmdline()
            if is_docker_run(argv):
                return docker_role(argv) or "other"
        if "source_bench" in line:
            return "source"
        if "destination_" in line:
            return "destination"
        return "other"

    def find(self, role: str) -> psutil.Process | str | None:
        """The newest live process of a role; for ``<role>-container``, the name of its newest
        running container."""
        if role == "ferryman":
            return self.me
        if role.endswith("-container"):
            names = self.containers.get(role.removesuffix("-container"), [])
            return names[-1] if names and container_running(names[-1]) else None
        live = [p for p in list(self.seen.values()) if alive(p) and self.role(p) == role]
        return max(live, key=lambda p: p.create_time()) if live else None

    def finish(self) -> int | None:
        try:
            self.output = self.process.communicate(timeout=COMMAND_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.output = self.process.communicate()
            self._stop.set()
            return None
        self._stop.set()
        self._watcher.join()
        return self.process.returncode


def is_docker_run(argv: list[str]) -> bool:
    return len(argv) > 1 and os.path.basename(argv[0]) == "docker" and argv[1] == "run"


def docker_role(argv: list[str]) -> str | None:
    for item in argv:
        if item.startswith("io.ferryman.role="):
            return item.split("=", 1)[1]
    return None


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)


def container_running(name: str) -> bool:
    return docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true"


def containers_left(names: set[str], store_label: str) -> list[str]:
    """The round's containers that still exist (running or not): those named, and any labelled
    with the round's store."""
    listed = docker("ps", "--all", "--filter", "label=io.ferryman.managed", "--format",
                    '{{.Names}} {{.Label "io.ferryman.store"}}')  # fmt: skip
    found = []
    for line in listed.stdout.splitlines():
        name, _, store = line.partition(" ")
        if name in names or store.strip() == store_label:
            found.append(name)
    return found


def alive(target: psutil.Process | str) -> bool:
    if isinstance(target, str):
        return container_running(target)
    process = target
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# -- a round ------------------------------------------------------------------------------------


@dataclass
class Plan:
    destination: str
    mode: str
    streams: int
    count: int
    first_count: int
    record_size: int
    state_every: int
    kills: list[Kill]
    docker: list[str] = field(default_factory=list)  # the roles run as docker: connectors

    def text(self) -> str:
        kills = ", ".join(f"{k.target}/SIG{k.signal}@{k.trigger}({k.detail})" for k in self.kills)
        return (
            f"dest={self.destination} docker={'+'.join(self.docker) or 'none'} mode={self.mode}"
            f" streams={self.streams} count={self.first_count}->{self.count} record_size={self.record_size}"
            f" state_every={self.state_every} kills=[{kills}]"
        )


def plan_round(rng: random.Random, args: argparse.Namespace) -> Plan:
    chosen_docker = rng.choice(DOCKER) if args.docker == "any" else args.docker
    docker = {"none": [], "both": ["source", "destination"]}.get(chosen_docker, [chosen_docker])
    destinations = DOCKER_DESTINATIONS if "destination" in docker else DESTINATIONS
    destination = rng.choice(destinations) if args.destination == "any" else args.destination
    if destination not in destinations:
        raise SystemExit(f"destination-{destination} has no Docker image: use duckdb or jsonl with --docker")
    targets = TARGETS + [CONTAINER_TARGETS[role] for role in docker]
    mode = rng.choice(MODES) if args.mode == "any" else args.mode
    count = rng.choice([1000, 10_000, 30_000, 100_000])
    streams, record_size = rng.randint(1, 4), rng.choice([100, 450, 2000])
    # About how long the sync takes (1.5 s to start, then ~15 MB/s on a 2-core machine): wall
    # offsets fall anywhere in it.
    expected_s = 1.5 + streams * count * record_size / 15e6
    kills = []
    for _ in range(rng.randint(1, args.max_kills)):
        target = rng.choice(targets) if args.target == "any" else args.target
        trigger = rng.choice(TRIGGERS)
        detail = {
            "start": f"{rng.uniform(0, 0.3):.2f}s",
            "state": str(rng.randint(1, 3)),
            "progress": f"{rng.uniform(0.05, 0.95):.2f}",
            "wall": f"{rng.uniform(0.05, 1.1) * expected_s:.2f}s",
        }[trigger]
        chosen = rng.choice(list(SIGNALS))
        kills.append(Kill(target, chosen if args.signal == "any" else args.signal, trigger, detail))
    return Plan(
        destination=destination,
        mode=mode,
        streams=streams,
        count=count,
        first_count=rng.choice([0, count // 10, count // 2]),
        record_size=record_size,
        state_every=rng.choice([0, 7, 100, 1000]),
        kills=kills,
        docker=docker,
    )


class Round:
    def __init__(self, number: int, plan: Plan, home: Path, env: dict[str, str], store_url: str, pg_db: str,
                 totals: Totals, verbose: bool) -> None:  # fmt: skip
        self.number, self.plan, self.home, self.env = number, plan, home, env
        self.store = Store(store_url)
        self.totals, self.verbose = totals, verbose
        self.connection = f"c{number}"
        self.streams = [f"stream_{i}" for i in range(plan.streams)]
        where = {
            "duckdb": str(home / f"r{number}.duckdb"),
            "jsonl": str(home / f"r{number}-jsonl"),
            "postgres": f"{pg_db}/r{number}",
        }[plan.destination]
        inside = None
        if "destination" in plan.docker:  # the container sees the home's local/ as /local
            inside = f"/local/{Path(where).name}"
            where = str(home / "local" / Path(where).name)
        self.rows = Rows(plan.destination, where, inside)
        self.store_label = hashlib.sha256(store_url.encode()).hexdigest()[:12]
        self.commands: list[Command] = []
        self.previous_count = 0  # what a completed overwrite left
        self.duplicates_allowed = False
        self.payload_len: int | None = None

    def say(self, text: str) -> None:
        print(f"  round {self.number}: {text}", flush=True)

    def violation(self, kind: str, text: str) -> None:
        self.totals.violations[kind] += 1
        print(f"  VIOLATION round {self.number} [{kind}]: {text}", flush=True)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*FERRYMAN, *args], env=self.env, capture_output=True, text=True, timeout=COMMAND_DEADLINE_S
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:3])}: exit {done.returncode}: {done.stderr.strip()[-800:]}")
        return done

    def set_up(self) -> None:
        p = self.plan
        source = {
            "count": p.first_count,
            "streams": p.streams,
            "record_size": p.record_size,
            "state_every": p.state_every,
        }
        connector = f"builtin:destination-{p.destination}"
        source_connector = "builtin:source-bench"
        if p.docker:
            from tests.images.build import image

            if "destination" in p.docker:
                connector = f"docker:{image(f'destination-{p.destination}')}"
            if "source" in p.docker:
                source_connector = f"docker:{image('source-bench')}"
        self.cli(
            "sources",
            "create",
            f"s{self.number}",
            "--connector",
            source_connector,
            "--config",
            json.dumps(source),
        )
        self.cli(
            "destinations",
            "create",
            f"d{self.number}",
            "--connector",
            connector,
            "--config",
            json.dumps(self.rows.config()),
        )
        if p.mode == "overwrite":
            modes = [f"--stream={s}:full_refresh:overwrite" for s in self.streams]
        else:
            modes = [f"--stream={s}:incremental:{p.mode}" for s in self.streams]
        self.cli(
            "connections",
            "create",
            self.connection,
            "--source",
            f"s{self.number}",
            "--destination",
            f"d{self.number}",
            *modes,
        )

    def sync(self, kills: list[Kill]) -> tuple[int | None, float]:
        """One `connections sync`, given the kills still to make: it takes them, in turn, while it
        runs (the next one in the attempt after the last one killed: the command's own retry),
        until one hits `ferryman` itself or the command ends."""
        command = Command([*FERRYMAN, "connections", "sync", self.connection, "--json"], self.env)
        self.commands.append(command)
        self.totals.commands += 1
        previous: tuple[int, int] | None = None
        while kills and command.process.poll() is None:
            kill = kills.pop(0)
            self.attack(command, kill, previous)
            if not kill.fired or "ferryman" in kill.landed:
                break
            previous = kill.attempt
        code = command.finish()
        wall = time.monotonic() - command.started
        if code is None:
            self.violation("wedged", f"`connections sync` still running after {COMMAND_DEADLINE_S}s; killed")
        if self.verbose:
            self.say(f"sync exit {code} in {wall:.1f}s: {command.output[1].strip()[-300:]}")
        return code, wall

    def attack(self, command: Command, kill: Kill, previous: tuple[int, int] | None) -> None:
        """Wait for the kill's moment (or the command's end), then signal its targets.

        After ``previous`` (an attempt killed before), the moment is counted from the next attempt.
        """
        while previous is not None and command.process.poll() is None:
            running = self.store.running_attempt(self.connection)
            if running is not None and running[:2] != previous:
                break
            time.sleep(0.02)
        command.started = time.monotonic()
        roles = ROLES.get(kill.target, [kill.target])
        connector_roles = [r for r in roles if r != "ferryman"]
        saved0 = self.store.saved(self.connection)
        changes, last = 0, saved0
        while command.process.poll() is None:
            ready = all(command.find(r) is not None for r in connector_roles)
            elapsed = time.monotonic() - command.started
            if kill.trigger == "start" and ready:
                time.sleep(float(kill.detail[:-1]))
                break
            if kill.trigger == "wall" and elapsed >= float(kill.detail[:-1]) and ready:
                break
            if kill.trigger == "state":
                now = self.store.saved(self.connection)
                if now != last:
                    changes, last = changes + 1, now
                if changes >= int(kill.detail) and ready:
                    break
            if kill.trigger == "progress":
                running = self.store.running_attempt(self.connection)
                total = self.plan.streams * self.plan.count
                if running and running[2] >= float(kill.detail) * total and ready:
                    break
            time.sleep(0.02)
        if command.process.poll() is not None:
            self.totals.missed += 1
            self.say(
                f"missed {kill.target}/SIG{kill.signal}@{kill.trigger}({kill.detail}): the sync ended first"
            )
            return
        running = self.store.running_attempt(self.connection)
        kill.attempt = (running[0], running[1]) if running else None
        kill.at_s = time.monotonic() - command.started
        kill.wall_time = time.time()
        source = command.find("source")
        kill.source_running = source is not None and alive(source)
        for role in roles:
            target = command.find(role)
            if target is None or not alive(target):
                continue
            if isinstance(target, str):  # the container itself, through the engine
                if docker("kill", "--signal", kill.signal, target).returncode == 0:
                    kill.landed.append(role)
                continue
            with contextlib.suppress(psutil.Error):
                target.send_signal(SIGNALS[kill.signal])
                kill.landed.append(role)
        kill.fired = bool(kill.landed)
        if kill.fired:
            self.totals.kills[f"{kill.target}/SIG{kill.signal}"] += 1
        else:
            self.totals.missed += 1
        if (kill.signal == "KILL" and "ferryman" in kill.landed) or {
            "destination",
            "destination-container",
        } & set(kill.landed):
            self.duplicates_allowed = True
        self.say(
            f"killed {'+'.join(kill.landed) or 'nothing'} with SIG{kill.signal} at {kill.at_s:.2f}s"
            f" ({kill.trigger} {kill.detail}; attempt {kill.attempt}"
            f"{'' if kill.source_running else ', the source had ended'})"
        )

    # -- checks --

    def settle(self, deadline_s: float) -> tuple[list[psutil.Process], list[str]]:
        """Wait (up to the deadline) for every process and container of the round to end; what
        is left."""
        end = time.monotonic() + deadline_s
        while True:
            left = [p for c in self.commands for p in list(c.seen.values()) if alive(p)]
            left += [p for p in named(str(self.home)) if p.pid not in {q.pid for q in left}]
            boxes: list[str] = []
            if self.plan.docker:
                names = {n for c in self.commands for found in c.containers.values() for n in found}
                boxes = containers_left(names, self.store_label)
            if (not left and not boxes) or time.monotonic() > end:
                return left, boxes
            time.sleep(0.1)

    def check_state_behind_data(self, when: str) -> None:
        if self.plan.mode == "overwrite":
            return
        saved = self.store.saved(self.connection)
        rows = self.read_rows()
        if rows is None:
            self.say(f"state check {when}: destination still locked, skipped")
            return
        for stream, last in saved.items():
            have = {r[0] for r in rows.get(stream, [])}
            missing = [i for i in range(1, last + 1) if i not in have]
            if missing:
                self.violation(
                    "state-ahead",
                    f"{when}: {stream}'s saved state is id {last} but the destination lacks {span(missing)}",
                )

    def read_rows(self) -> dict[str, list[tuple[int, str, str]]] | None:
        for _ in range(50):
            rows = self.rows.read(self.streams)
            if rows is not None:
                return rows
            time.sleep(0.2)
        return None

    def check_overwrite_kept(self, when: str) -> None:
        rows = self.read_rows()
        if rows is None:
            return
        for stream in self.streams:
            found = compare(rows[stream], self.previous_count, None)
            if any(found.values()) and not any(compare(rows[stream], self.plan.count, None).values()):
                # Replaced whole: the worker had told the destination the stream was complete
                # (the source had succeeded) before the kill failed the job. Never a part.
                self.say(f"{when}: {stream} holds the new sync's ids 1..{self.plan.count}, each once")
                continue
            if any(found.values()):
                self.violation(
                    "overwrite-replaced",
                    f"{when}: {stream} should still hold ids 1..{self.previous_count} once each; "
                    + ", ".join(f"{k} {span(v)}" for k, v in found.items() if v),
                )

    def check_data(self) -> None:
        rows = self.read_rows()
        if rows is None:
            self.violation("data", "the destination could not be read (still locked)")
            return
        append_like = self.plan.mode == "append" or (
            self.plan.mode == "append_dedup" and self.plan.destination == "jsonl"
        )
        for stream in self.streams:
            found = compare(rows[stream], self.plan.count, None)
            for kind in ("missing", "foreign", "bad_values"):
                if found[kind]:
                    self.violation("data", f"{stream}: {kind} ids {span(found[kind])}")
            if found["twice"]:
                if append_like and self.duplicates_allowed:
                    self.totals.duplicates_allowed += len(found["twice"])
                    self.say(
                        f"{stream}: {span(found['twice'])} ids stored twice"
                        " (allowed: a SIGKILLed ferryman or a killed destination)"
                    )
                else:
                    self.violation(
                        "data",
                        f"{stream}: ids stored more than once {span(found['twice'])} ({self.plan.mode})",
                    )

    def check_jobs(self) -> None:
        mine = json.loads(self.cli("jobs", "list", "--connection", self.connection, "--json").stdout)["jobs"]
        for job in mine:
            if job["status"] in ("pending", "running", "incomplete"):
                self.violation("wedged", f"job {job['id']} is {job['status']} after the successful sync")
        shown = {}
        for kill in self.plan.kills:
            if not kill.fired or kill.attempt is None:
                continue
            job_id, number = kill.attempt
            if job_id not in shown:
                shown[job_id] = json.loads(self.cli("jobs", "show", str(job_id), "--json").stdout)
            document = shown[job_id]
            attempt = next((a for a in document["attempts"] if a["number"] == number), None)
            hit = [r for r in kill.landed if r != "watchdog"]
            if not hit:
                continue
            if attempt is None:
                self.violation("told", f"job {job_id} shows no attempt {number}")
            elif attempt["status"] == "succeeded" and ended_soon(attempt, kill):
                self.say(
                    f"job {job_id} attempt {number} succeeded: SIG{kill.signal} came as it ended (within 1s)"
                )
                continue
            elif attempt["status"] == "succeeded":
                self.violation(
                    "told",
                    f"job {job_id} attempt {number} succeeded though its {'+'.join(hit)}"
                    f" got SIG{kill.signal}",
                )
            elif attempt["status"] == "running":
                self.violation("told", f"job {job_id} attempt {number} still shows running")
            if "ferryman" in hit and document["job"]["status"] not in ("failed", "cancelled"):
                self.violation(
                    "told",
                    f"job {job_id} is {document['job']['status']} though its ferryman got SIG{kill.signal}",
                )
            if self.verbose and attempt is not None:
                failures = "; ".join(f["message"][:120] for f in attempt.get("failures", []))
                self.say(f"job {job_id} attempt {number}: {attempt['status']} {failures}")

    def run(self) -> None:
        p = self.plan
        self.set_up()
        code, _ = self.sync([])
        if code != 0:
            self.violation(
                "clean-sync",
                f"the first, undisturbed sync exited {code}: {self.commands[-1].output[1][-400:]}",
            )
            return
        self.previous_count = p.first_count
        self.cli("sources", "update", f"s{self.number}", "--merge", json.dumps({"count": p.count}))
        succeeded = False
        pending = list(p.kills)
        while pending:
            first = len(p.kills) - len(pending)
            code, _ = self.sync(pending)
            used = p.kills[first : len(p.kills) - len(pending)]
            kill = used[-1]
            when = f"after kill {len(p.kills) - len(pending)} ({kill.target}/SIG{kill.signal}, exit {code})"
            # Connectors left to the next command: the ferryman SIGKILLed and its watchdog gone too.
            orphaned = any(k.signal == "KILL" and "ferryman" in k.landed for k in used) and any(
                "watchdog" in k.landed for k in used
            )
            settled, boxes = ([], []) if orphaned else self.settle(GRACE_S + 5)
            for process in settled:  # the command, or its watchdog, should have stopped them
                with contextlib.suppress(psutil.Error):
                    self.violation("leftover", f"{when}: pid {process.pid} still runs {GRACE_S + 5}s later: "
                                   f"{' '.join(process.cmdline())[:160]}")  # fmt: skip
            for box in boxes:
                self.violation("leftover", f"{when}: container {box} still there {GRACE_S + 5}s later")
            if not orphaned:
                self.check_state_behind_data(when)
            if code == 0:
                succeeded = True
                break
            if p.mode == "overwrite" and not orphaned:
                self.check_overwrite_kept(when)
        tries = 0
        while not succeeded and tries < 4:
            tries += 1
            code, _ = self.sync([])
            self.check_state_behind_data(f"after clean sync {tries} (exit {code})")
            succeeded = code == 0
            if not succeeded:
                self.say(f"clean sync {tries} exited {code}: {self.commands[-1].output[1].strip()[-400:]}")
        if not succeeded:
            self.violation("no-success", "4 syncs after the kills failed")
        left, boxes = self.settle(GRACE_S + 5)
        for process in left:
            with contextlib.suppress(psutil.Error):
                self.violation(
                    "leftover", f"pid {process.pid} still runs: {' '.join(process.cmdline())[:160]}"
                )
                process.kill()
        for box in boxes:
            self.violation("leftover", f"container {box} still there after the round's last command")
            docker("rm", "--force", box)
        if succeeded:
            self.check_data()
            saved = self.store.saved(self.connection)
            if p.mode != "overwrite" and saved != {s: p.count for s in self.streams}:
                self.violation(
                    "state", f"after success the saved state is {saved}, not id {p.count} per stream"
                )
        self.check_jobs()
        self.store.close()


# -- the Temporal engine (--engine temporal) -----------------------------------------------------

TEMPORAL_TARGETS = ["worker", "source", "destination", "temporal", "cli", "cancel"]
LIVE = ("pending", "running", "incomplete")
SETTLE_JOBS_S = 240  # everything up: a job still live after this is stuck


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def role_of(process: psutil.Process) -> str:
    try:
        line = " ".join(process.cmdline())
    except psutil.Error:
        return "gone"
    if "_watchdog_main" in line:
        return "watchdog"
    if "source_bench" in line:
        return "source"
    if "destination_" in line:
        return "destination"
    return "other"


class Daemon:
    """A long-lived process (a worker, the Temporal dev server): output to a log, descendants kept."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        with log.open("a") as output:
            self.process = subprocess.Popen(argv, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
        self.me = psutil.Process(self.process.pid)
        self.seen: dict[int, psutil.Process] = {}
        self.signalled: str | None = None  # the signal the harness sent it
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.is_set() and self.process.poll() is None:
            with contextlib.suppress(psutil.Error):
                for child in self.me.children(recursive=True):
                    self.seen.setdefault(child.pid, child)
            self._stop.wait(0.05)

    def alive(self) -> bool:
        return self.process.poll() is None

    def live(self, role: str) -> list[psutil.Process]:
        return [p for p in list(self.seen.values()) if alive(p) and role_of(p) == role]

    def signal(self, name: str) -> None:
        self.signalled = self.signalled or name
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(SIGNALS[name])

    def close(self) -> None:
        self._stop.set()


class Rig:
    """A Temporal dev server (its history in a file, so it keeps it across its restarts) and
    ``ferryman worker --engine temporal`` processes on the run's store."""

    def __init__(self, work: Path, env: dict[str, str], workers: int) -> None:
        self.binary = str(Path(sys.executable).parent / "temporal")
        self.work, self.wanted = work, workers
        self.ports = [free_port() for _ in range(4)]
        self.address = f"127.0.0.1:{self.ports[0]}"
        self.db_file = work / "temporal.db"
        self.env = {**env, "FERRYMAN_TEMPORAL_ADDRESS": self.address}
        self.server: Daemon | None = None
        self.workers: list[Daemon] = []
        self.server_starts = 0
        self.lock = threading.Lock()
        self.stopped = False

    def start_server(self) -> None:
        command = [
            self.binary,
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.ports[0]),
            "--ui-port",
            str(self.ports[1]),
            "--http-port",
            str(self.ports[2]),
            "--metrics-port",
            str(self.ports[3]),
            "--log-level",
            "error",
            "--db-filename",
            str(self.db_file),
        ]
        for _ in range(3):  # a port of the killed server may linger a moment
            self.server = Daemon(command, dict(os.environ), self.work / "temporal.log")
            self.server_starts += 1
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and self.server.alive():
                health = subprocess.run(
                    [self.binary, "operator", "cluster", "health", "--address", self.address],
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                if health.returncode == 0 and "SERVING" in health.stdout:
                    return
                time.sleep(0.5)
            self.server.process.kill()
            self.server.process.wait()
            time.sleep(2)
        raise RuntimeError(f"the Temporal dev server did not start: see {self.work / 'temporal.log'}")

    def start_worker(self) -> Daemon:
        log = self.work / f"worker-{len(self.workers) + 1}.log"
        worker = Daemon([*FERRYMAN, "worker", "--engine", "temporal"], self.env, log)
        self.workers.append(worker)
        return worker

    def serving(self) -> list[Daemon]:
        return [w for w in self.workers if w.alive() and w.signalled is None]

    def bring_up(self) -> None:
        with self.lock:
            if self.stopped:  # a restart timer that fired after the run
                return
            if self.server is None or not self.server.alive():
                self.start_server()
            while len(self.serving()) < self.wanted:
                self.start_worker()

    def connectors(self) -> list[tuple[Daemon, psutil.Process]]:
        return [(w, p) for w in self.workers for role in ("source", "destination") for p in w.live(role)]

    def stop(self) -> list[str]:
        """SIGTERM every worker, wait, then the server; what was left running."""
        with self.lock:
            self.stopped = True
        left = []
        for worker in self.workers:
            if worker.alive():
                worker.signal("TERM")
        for worker in self.workers:
            try:
                worker.process.wait(120)
            except subprocess.TimeoutExpired:
                left.append(f"worker pid {worker.process.pid} still runs 120 s after SIGTERM")
                worker.process.kill()
                worker.process.wait()
        time.sleep(GRACE_S + 3)
        for worker in self.workers:
            for process in list(worker.seen.values()):
                if alive(process):
                    with contextlib.suppress(psutil.Error):
                        left.append(
                            f"pid {process.pid} ({role_of(process)}) of worker {worker.process.pid}"
                            f" still runs after it stopped: {' '.join(process.cmdline())[:140]}"
                        )
                        process.kill()
            worker.close()
        if self.server is not None and self.server.alive():
            self.server.process.terminate()
            try:
                self.server.process.wait(30)
            except subprocess.TimeoutExpired:
                self.server.process.kill()
                self.server.process.wait()
            self.server.close()
        return left


class TemporalRound(Round):
    """A round on the Temporal engine: the job runs on the rig's workers; the harness kills a
    worker, a connector, the Temporal server, the foreground command, or cancels the job."""

    def __init__(self, rig: Rig, rng: random.Random, *args: Any) -> None:
        super().__init__(*args)
        self.rig, self.rng = rig, rng
        self.detach = rng.random() < 0.5
        self.twice_seen: dict[
            int, float
        ] = {}  # job -> when two of its attempts/sources were first seen at once
        self.cancelled: dict[int, int] = {}  # job -> attempts it had when it ended cancelled
        self._stop = threading.Event()

    # -- the store, read directly --

    def jobs(self) -> list[tuple[int, str, bool]]:
        return [
            (int(r[0]), r[1], bool(r[2]))
            for r in self.store.rows(
                "SELECT j.id, j.status, j.cancel_requested FROM jobs j JOIN connections c"
                " ON j.scope = CAST(c.id AS VARCHAR(255)) WHERE c.name = :name ORDER BY j.id",
                name=self.connection,
            )
        ]

    def attempts(self, job: int) -> list[tuple[int, str, Any, Any]]:
        return [
            tuple(r)
            for r in self.store.rows(
                "SELECT number, status, created_at, ended_at FROM attempts WHERE job_id = :j ORDER BY number",
                j=job,
            )
        ]

    def monitor(self) -> None:
        """Two running attempts of one job, or two sources of the round alive at once (in two
        process trees): noted while the round runs; over 5 s, a violation."""
        while not self._stop.wait(0.25):
            for row in self.store.rows(
                "SELECT a.job_id, COUNT(*) FROM attempts a JOIN jobs j ON j.id = a.job_id JOIN connections c"
                " ON j.scope = CAST(c.id AS VARCHAR(255)) WHERE c.name = :name AND a.status = 'running'"
                " GROUP BY a.job_id HAVING COUNT(*) > 1",
                name=self.connection,
            ):
                self.violation("twice-at-once", f"job {row[0]} has {row[1]} running attempts")
            sources = [(w, p) for w, p in self.rig.connectors() if role_of(p) == "source"]
            if len({w.process.pid for w, _ in sources}) > 1:
                first = self.twice_seen.setdefault(-1, time.monotonic())
                if time.monotonic() - first > 5 and -2 not in self.twice_seen:
                    self.twice_seen[-2] = 0
                    self.violation(
                        "twice-at-once",
                        "sources of the round alive under two workers for over 5 s: "
                        + ", ".join(f"pid {p.pid} (worker {w.process.pid})" for w, p in sources),
                    )
            else:
                self.twice_seen.pop(-1, None)

    # -- attacks --

    def live_job(self) -> int | None:
        live = [j for j, status, _ in self.jobs() if status in LIVE]
        return live[-1] if live else None

    def attack_t(
        self, kill: Kill, command: Command | None, job: int, previous: tuple[int, int] | None
    ) -> None:
        started = time.monotonic()
        while previous is not None and self.live_job() == job:
            running = self.store.running_attempt(self.connection)
            if running is not None and running[:2] != previous:
                break
            time.sleep(0.05)
        started = time.monotonic()
        saved0 = self.store.saved(self.connection)
        changes, last = 0, saved0
        needs_connectors = kill.target in ("worker", "source", "destination")

        def target_ready() -> bool:
            if kill.target == "cli":
                return command is not None and command.process.poll() is None
            running = self.store.running_attempt(self.connection)
            if running is None:
                return False
            if needs_connectors:
                roles = {role_of(p) for _, p in self.rig.connectors()}
                return (kill.target if kill.target != "worker" else "source") in roles
            return True

        while self.live_job() == job:
            ready = target_ready()
            elapsed = time.monotonic() - started
            if kill.trigger == "start" and ready:
                time.sleep(float(kill.detail[:-1]))
                break
            if kill.trigger == "wall" and elapsed >= float(kill.detail[:-1]) and ready:
                break
            if kill.trigger == "state":
                now = self.store.saved(self.connection)
                if now != last:
                    changes, last = changes + 1, now
                if changes >= int(kill.detail) and ready:
                    break
            if kill.trigger == "progress":
                running = self.store.running_attempt(self.connection)
                if (
                    running
                    and running[2] >= float(kill.detail) * self.plan.streams * self.plan.count
                    and ready
                ):
                    break
            time.sleep(0.05)
        if self.live_job() != job:
            self.totals.missed += 1
            self.say(
                f"missed {kill.target}/SIG{kill.signal}@{kill.trigger}({kill.detail}): job {job} ended first"
            )
            return
        running = self.store.running_attempt(self.connection)
        kill.attempt = (running[0], running[1]) if running else None
        kill.at_s = time.monotonic() - started
        kill.wall_time = time.time()
        kill.source_running = any(role_of(p) == "source" for _, p in self.rig.connectors())
        if kill.target == "worker":
            owners = [w for w, p in self.rig.connectors() if w.alive()] or self.rig.serving()
            if owners:
                owners[0].signal(kill.signal)
                kill.landed.append(f"worker:{owners[0].process.pid}")
        elif kill.target in ("source", "destination"):
            for _, process in self.rig.connectors():
                if role_of(process) == kill.target:
                    with contextlib.suppress(psutil.Error):
                        process.send_signal(SIGNALS[kill.signal])
                        kill.landed.append(kill.target)
        elif kill.target == "temporal" and self.rig.server is not None and self.rig.server.alive():
            self.rig.server.signal("KILL")
            self.rig.server.process.wait()
            kill.landed.append("temporal")
        elif kill.target == "cli" and command is not None and command.process.poll() is None:
            command.process.send_signal(SIGNALS[kill.signal])
            kill.landed.append("cli")
        elif kill.target == "cancel":
            done = subprocess.run(
                [*FERRYMAN, "jobs", "cancel", str(job), "--json"],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=COMMAND_DEADLINE_S,
            )
            answer = json.loads(done.stdout)["job"] if done.returncode == 0 else {}
            if answer.get("status") == "cancelled" or answer.get("cancel_requested"):
                kill.landed.append("cancel")  # else the job had ended as the command started
            self.say(f"jobs cancel {job}: exit {done.returncode} {answer or done.stderr.strip()[-300:]}")
        kill.fired = bool(kill.landed)
        key = f"{kill.target}/SIG{kill.signal}" if kill.target not in ("cancel",) else "cancel"
        if kill.fired:
            self.totals.kills[key] += 1
        else:
            self.totals.missed += 1
        if (kill.target == "worker" and kill.signal == "KILL") or "destination" in kill.landed:
            self.duplicates_allowed = True
        self.say(
            f"{'+'.join(kill.landed) or 'nothing'}"
            f" {'cancelled' if kill.target == 'cancel' else 'got SIG' + kill.signal}"
            f" at {kill.at_s:.2f}s ({kill.trigger} {kill.detail}; attempt {kill.attempt}"
            f"{'' if kill.source_running else ', no source running'})"
        )
        if kill.target in ("worker", "temporal"):  # back after a moment, on the same ports and db file,
            # while the next kill may already be waiting for its moment (a cancel with Temporal away)
            threading.Timer(self.rng.uniform(0, 8), self.rig.bring_up).start()

    def wait_jobs(self, when: str) -> bool:
        self.rig.bring_up()
        deadline = time.monotonic() + SETTLE_JOBS_S
        while time.monotonic() < deadline:
            live = [(j, s) for j, s, _ in self.jobs() if s in LIVE]
            if not live:
                return True
            self.rig.bring_up()  # a worker SIGTERMed or SIGINTed drains and exits: replace it
            time.sleep(0.5)
        self.violation("wedged", f"{when}: jobs {live} still live {SETTLE_JOBS_S}s after everything was up")
        return False

    def foreground(self) -> tuple[int | None, Command]:
        command = Command([*FERRYMAN, "connections", "sync", self.connection, "--json"], self.env)
        self.commands.append(command)
        self.totals.commands += 1
        return command.finish(), command

    def run(self) -> None:
        p = self.plan
        self.rig.bring_up()
        self.set_up()
        code, command = self.foreground()
        if code != 0:
            self.violation(
                "clean-sync", f"the first, undisturbed sync exited {code}: {command.output[1][-400:]}"
            )
            return
        self.previous_count = p.first_count
        self.cli("sources", "update", f"s{self.number}", "--merge", json.dumps({"count": p.count}))
        watcher = threading.Thread(target=self.monitor, daemon=True)
        watcher.start()
        try:
            self.chaos()
        finally:
            self._stop.set()
            watcher.join()
        self.store.close()

    def chaos(self) -> None:
        p = self.plan
        before = {j for j, _, _ in self.jobs()}
        fg: Command | None = None
        if self.detach:
            self.cli("connections", "sync", self.connection, "--detach", "--json")
            self.totals.commands += 1
        else:
            fg = Command([*FERRYMAN, "connections", "sync", self.connection, "--json"], self.env)
            self.commands.append(fg)
            self.totals.commands += 1
        deadline = time.monotonic() + 60
        job = None
        while job is None and time.monotonic() < deadline:
            new = [j for j, _, _ in self.jobs() if j not in before]
            job = new[0] if new else None
            time.sleep(0.05)
        if job is None:
            self.violation("harness", "the chaos sync's job never appeared in the store")
            return
        previous = None
        for kill in p.kills:
            self.attack_t(kill, fg, job, previous)
            if not kill.fired or kill.target in ("cli", "cancel"):
                break
            previous = kill.attempt
        self.wait_jobs(f"job {job}")
        if fg is not None:
            code = fg.finish()
            if code is None:
                self.violation(
                    "wedged", f"`connections sync` of job {job} still running {COMMAND_DEADLINE_S}s on"
                )
            elif self.verbose:
                self.say(f"foreground sync exit {code}: {fg.output[1].strip()[-300:]}")
        status = dict((j, s) for j, s, _ in self.jobs()).get(job)
        self.say(f"job {job} ended {status} ({len(self.attempts(job))} attempts)")
        if status == "cancelled":
            self.cancelled[job] = len(self.attempts(job))
        self.check_leftovers(f"after job {job}")
        self.check_state_behind_data(f"after job {job} ({status})")
        if status != "succeeded" and p.mode == "overwrite":
            self.check_overwrite_kept(f"after job {job} ({status})")
        succeeded, tries = status == "succeeded", 0
        while not succeeded and tries < 3:
            tries += 1
            self.rig.bring_up()
            code, command = self.foreground()
            self.check_state_behind_data(f"after clean sync {tries} (exit {code})")
            succeeded = code == 0
            if not succeeded:
                self.say(f"clean sync {tries} exited {code}: {command.output[1].strip()[-400:]}")
        if not succeeded:
            self.violation("no-success", "3 clean syncs after the chaos failed")
        self.wait_jobs("at the round's end")
        self.check_leftovers("at the round's end")
        if succeeded:
            self.check_data()
            saved = self.store.saved(self.connection)
            if p.mode != "overwrite" and saved != {s: p.count for s in self.streams}:
                self.violation(
                    "state", f"after success the saved state is {saved}, not id {p.count} per stream"
                )
        self.check_jobs_t(job)

    def drop_rows(self) -> None:
        if self.plan.destination == "postgres":
            import psycopg

            database, schema = self.rows.where.split("/")
            with psycopg.connect(dbname=database, autocommit=True, **PG) as conn:  # type: ignore[arg-type]
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        elif Path(self.rows.where).is_dir():
            shutil.rmtree(self.rows.where, ignore_errors=True)
        else:
            Path(self.rows.where).unlink(missing_ok=True)

    def check_leftovers(self, when: str) -> None:
        end = time.monotonic() + GRACE_S + 5
        while self.rig.connectors() and time.monotonic() < end:
            time.sleep(0.2)
        for worker, process in self.rig.connectors():
            with contextlib.suppress(psutil.Error):
                self.violation(
                    "leftover",
                    f"{when}: {role_of(process)} pid {process.pid} of worker"
                    f" {worker.process.pid} still runs with no job live",
                )

    def check_jobs_t(self, job: int) -> None:
        for j, status, _ in self.jobs():
            if status in LIVE:
                self.violation("wedged", f"job {j} is {status} at the round's end")
            attempts = self.attempts(j)
            for before, after in itertools.pairwise(attempts):
                if before[3] is None or str(after[2]) < str(before[3]):
                    self.violation(
                        "twice-at-once",
                        f"job {j} attempt {after[0]} began ({after[2]}) before"
                        f" attempt {before[0]} ended ({before[3]})",
                    )
            if j in self.cancelled and (status != "cancelled" or len(attempts) != self.cancelled[j]):
                self.violation(
                    "cancelled-ran",
                    f"job {j} ended cancelled with {self.cancelled[j]} attempts,"
                    f" is now {status} with {len(attempts)}",
                )
        document = json.loads(self.cli("jobs", "show", str(job), "--json").stdout)
        for kill in self.plan.kills:
            if not kill.fired or kill.attempt is None:
                continue
            hard = (kill.target == "worker" and kill.signal == "KILL") or kill.target in (
                "source",
                "destination",
            )
            attempt = next((a for a in document["attempts"] if a["number"] == kill.attempt[1]), None)
            if attempt is None:
                self.violation("told", f"job {job} shows no attempt {kill.attempt[1]}")
            elif attempt["status"] == "running":
                self.violation("told", f"job {job} attempt {kill.attempt[1]} still shows running")
            elif hard and attempt["status"] == "succeeded" and not ended_soon(attempt, kill):
                self.violation(
                    "told",
                    f"job {job} attempt {kill.attempt[1]} succeeded though its"
                    f" {kill.target} got SIG{kill.signal}",
                )
            cancel = kill.target == "cancel" or (kill.target == "cli" and kill.signal != "KILL")
            if cancel and document["job"]["status"] not in ("cancelled", "succeeded"):
                self.violation(
                    "told", f"job {job} is {document['job']['status']} after a cancel ({kill.target})"
                )
            if self.verbose and attempt is not None:
                failures = "; ".join(f["message"][:120] for f in attempt.get("failures", []))
                self.say(f"job {job} attempt {kill.attempt[1]}: {attempt['status']} {failures}")


def plan_temporal(rng: random.Random, args: argparse.Namespace) -> Plan:
    plan = plan_round(
        rng, argparse.Namespace(**{**vars(args), "target": "ferryman", "signal": "KILL", "docker": "none"})
    )
    # A job's start on Temporal takes a second or two, and a command (`jobs cancel`) as long:
    # syncs of 60-200 MB (4-15 s), so most kills come while the job runs.
    volume = plan.streams * plan.count * plan.record_size
    factor = max(1, round(rng.uniform(60e6, 200e6) / volume))
    plan.count, plan.first_count = plan.count * factor, plan.first_count * factor
    stretch = (1.5 + volume * factor / 15e6) / (1.5 + volume / 15e6)  # the expected duration's
    for kill in plan.kills:
        if kill.trigger == "wall":
            kill.detail = f"{float(kill.detail[:-1]) * stretch:.2f}s"
        kill.target = rng.choice(TEMPORAL_TARGETS) if args.target == "any" else args.target
        kill.signal = rng.choice(list(SIGNALS)) if args.signal == "any" else args.signal
        if kill.target == "temporal":
            kill.signal = "KILL"
    return plan


def run_temporal(args: argparse.Namespace, work: Path, pg_db: str, totals: Totals) -> None:
    home = work / "home"
    env = {
        **os.environ,
        "FERRYMAN_HOME": str(home),
        "FERRYMAN_CANCEL_GRACE_S": str(GRACE_S),
        "FERRYMAN_RETRY_BACKOFF_MIN_S": "0",
        "FERRYMAN_PROGRESS_INTERVAL_S": "3600",
        "FERRYMAN_ENGINE": "temporal",
        "FERRYMAN_TEMPORAL_HEARTBEAT_S": "1",
        "FERRYMAN_TEMPORAL_HEARTBEAT_TIMEOUT_S": "10",
        "FERRYMAN_TEMPORAL_RESUBMIT_AFTER_S": "2",
        "FERRYMAN_TEMPORAL_RPC_TIMEOUT_S": "10",
        "FERRYMAN_ENGINE_HEARTBEAT_S": "1",
    }
    for name in (
        "FERRYMAN_DATABASE_URL",
        "FERRYMAN_DOCKER_LOCAL_ROOT",
        "FERRYMAN_TEMPORAL_ADDRESS",
        "FERRYMAN_TEMPORAL_TASK_QUEUE_PREFIX",
    ):
        env.pop(name, None)
    store_url = f"sqlite:///{home / 'ferryman.db'}"
    if args.store != "sqlite":
        env["FERRYMAN_DATABASE_URL"] = store_url = args.store
    rig = Rig(work, env, args.workers)
    env = rig.env
    started = time.monotonic()
    all_rounds: list[TemporalRound] = []
    try:
        rig.bring_up()
        numbers = [args.round] if args.round is not None else range(1, args.rounds + 1)
        for number in numbers:
            if args.minutes is not None and time.monotonic() - started > args.minutes * 60:
                print(f"time limit of {args.minutes:g} minutes: round {number} and after not run", flush=True)
                break
            rng = random.Random(f"{args.seed}:{number}")
            plan = plan_temporal(rng, args)
            chaos = TemporalRound(rig, rng, number, plan, home, env, store_url, pg_db, totals, args.verbose)
            print(
                f"round {number} (--seed {args.seed} --round {number}): {plan.text()}"
                f" {'--detach' if chaos.detach else 'foreground'}",
                flush=True,
            )
            before = sum(totals.violations.values())
            round_started = time.monotonic()
            try:
                chaos.run()
            except Exception as error:  # the harness's own trouble: say it, go on
                chaos.violation("harness", f"{type(error).__name__}: {error}")
            all_rounds.append(chaos)
            totals.rounds += 1
            found = sum(totals.violations.values()) - before
            if not found:  # the round's rows, kept only when it found something
                chaos.drop_rows()
            print(
                f"  round {number}: {time.monotonic() - round_started:.1f}s, {found} violation(s)", flush=True
            )
        for chaos in all_rounds:  # a cancelled job stays cancelled, with no new attempt, to the end
            chaos.store = Store(store_url)
            for job, count in chaos.cancelled.items():
                now = dict((j, s) for j, s, _ in chaos.jobs()).get(job)
                if now != "cancelled" or len(chaos.attempts(job)) != count:
                    chaos.violation(
                        "cancelled-ran",
                        f"job {job}: cancelled with {count} attempts, now {now}"
                        f" with {len(chaos.attempts(job))}",
                    )
            chaos.store.close()
    finally:
        for line in rig.stop():
            totals.violations["leftover"] += 1
            print(f"  VIOLATION [leftover]: {line}", flush=True)
        print(
            f"  temporal: {rig.server_starts} server starts, {len(rig.workers)} workers started", flush=True
        )


def ended_soon(attempt: dict[str, Any], kill: Kill) -> bool:
    """The attempt ended within a second of the signal: it was ending anyway (a race, not a fault).

    A SIGKILLed ``ferryman`` cannot end an attempt succeeded: one that did had ended before the
    signal, after the harness saw it running. A SIGINT or SIGTERM is looked at by the command's
    main loop about once a second (cli/foreground.py), so a sync that ends within that second
    ends succeeded and exits 0.
    """
    import datetime

    ended = attempt.get("ended_at")
    if not ended:
        return False
    return datetime.datetime.fromisoformat(ended).timestamp() - kill.wall_time < 1.0


def named(text: str) -> list[psutil.Process]:
    """Processes whose command line or working directory names ``text`` (not this one)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        if process.pid == os.getpid():
            continue
        line = " ".join(process.info.get("cmdline") or [])
        if text in line and alive(process):
            found.append(process)
    return found


def make_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:  # type: ignore[arg-type]
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:  # type: ignore[arg-type]
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--round", type=int, default=None, help="run only this round of the seed")
    parser.add_argument("--destination", choices=[*DESTINATIONS, "any"], default="any")
    parser.add_argument("--mode", choices=[*MODES, "any"], default="any")
    parser.add_argument(
        "--target",
        choices=[*sorted({*TARGETS, *CONTAINER_TARGETS.values(), *TEMPORAL_TARGETS}), "any"],
        default="any",
    )
    parser.add_argument("--signal", choices=[*SIGNALS, "any"], default="any")
    parser.add_argument("--home", choices=["fresh", "kept"], default="fresh")
    parser.add_argument(
        "--store", default="sqlite", help="sqlite, or a postgresql+psycopg:// URL of a database"
    )
    parser.add_argument(
        "--docker", choices=[*DOCKER, "any"], default="none", help="which connectors run as docker: ones"
    )
    parser.add_argument("--max-kills", type=int, default=3)
    parser.add_argument(
        "--minutes", type=float, default=None, help="start no round after this long (a summary still prints)"
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="the homes go here (default: a temporary dir)"
    )
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--engine", choices=["local", "temporal"], default="local",
        help="temporal: a dev server and --workers `ferryman worker --engine temporal` run the jobs",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="with --engine temporal: how many workers")
    args = parser.parse_args()
    if args.engine == "temporal" and args.docker != "none":
        raise SystemExit("--engine temporal runs the connectors as builtin: only (no --docker)")

    if args.docker != "none":
        from tests.images.build import ensure

        ensure("source-bench", *(f"destination-{d}" for d in DOCKER_DESTINATIONS))
    work = args.work or Path(tempfile.mkdtemp(prefix="ferryman-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:6]
    pg_db = f"ferryman_chaos_{args.seed}_{run_id}"
    make_pg_database(pg_db)
    if args.store != "sqlite":
        make_pg_database(args.store.rsplit("/", 1)[1].split("?")[0])
    print(
        f"chaos: seed={args.seed} rounds={args.rounds} round={args.round} destination={args.destination}"
        f" mode={args.mode} target={args.target} signal={args.signal} home={args.home} store={args.store}"
        f" docker={args.docker} engine={args.engine}"
        f" max_kills={args.max_kills} work={work}",
        flush=True,
    )
    totals = Totals()
    started = time.monotonic()
    numbers = [args.round] if args.round is not None else range(1, args.rounds + 1)
    if args.engine == "temporal":
        run_temporal(args, work, pg_db, totals)
        numbers = []
    for number in numbers:
        if args.minutes is not None and time.monotonic() - started > args.minutes * 60:
            print(f"time limit of {args.minutes:g} minutes: round {number} and after not run", flush=True)
            break
        rng = random.Random(f"{args.seed}:{number}")
        plan = plan_round(rng, args)
        home = work / ("home" if args.home == "kept" else f"home-{number}")
        env = {**os.environ, "FERRYMAN_HOME": str(home), "FERRYMAN_CANCEL_GRACE_S": str(GRACE_S),
               "FERRYMAN_RETRY_BACKOFF_MIN_S": "0", "FERRYMAN_PROGRESS_INTERVAL_S": "3600"}  # fmt: skip
        env.pop("FERRYMAN_DATABASE_URL", None)
        env.pop("FERRYMAN_DOCKER_LOCAL_ROOT", None)
        store_url = f"sqlite:///{home / 'ferryman.db'}"
        if args.store != "sqlite":
            env["FERRYMAN_DATABASE_URL"] = store_url = args.store
        print(f"round {number} (--seed {args.seed} --round {number}): {plan.text()}", flush=True)
        chaos = Round(number, plan, home, env, store_url, pg_db, totals, args.verbose)
        before = sum(totals.violations.values())
        round_started = time.monotonic()
        try:
            chaos.run()
        except Exception as error:  # the harness's own trouble: say it, go on
            chaos.violation("harness", f"{type(error).__name__}: {error}")
        totals.rounds += 1
        found = sum(totals.violations.values()) - before
        print(f"  round {number}: {time.monotonic() - round_started:.1f}s, {found} violation(s)", flush=True)
        if args.home == "fresh" and not found:  # a round that found something is kept to look at
            shutil.rmtree(home, ignore_errors=True)
    totals.seconds = time.monotonic() - started
    print(
        f"summary: {totals.rounds} rounds, {totals.commands} syncs, {totals.seconds:.0f}s;"
        f" missed kills {totals.missed}"
    )
    for key, value in sorted(totals.kills.items()):
        print(f"  kill {key:32} {value:5}")
    print(f"  ids stored twice where allowed: {totals.duplicates_allowed}")
    for key, value in sorted(totals.violations.items()):
        print(f"  violations {key:26} {value:5}")
    if not totals.violations:
        print("  violations: none")
        drop_pg_database(pg_db)  # else kept, with the homes, to look at


if __name__ == "__main__":
    main()
