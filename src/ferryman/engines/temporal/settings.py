"""Where Temporal is, and which task queue serves which job type (Airbyte's queue names)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ferryman.errors import UserInputError
from ferryman.jobs.states import JobType

ENGINES = ("local", "temporal")
# Airbyte's task queues; sync and reset share SYNC, as they share the sync slots.
QUEUES = {"spec": "GET_SPEC", "check": "CHECK_CONNECTION", "discover": "DISCOVER_SCHEMA", "sync": "SYNC"}


def engine_name(env: Mapping[str, str], chosen: str | None = None) -> str:
    """``--engine`` if given, else FERRYMAN_ENGINE, else local."""
    name = (chosen or env.get("FERRYMAN_ENGINE") or "local").strip().lower()
    if name not in ENGINES:
        raise UserInputError(f"unknown engine {name!r}: choose local or temporal (FERRYMAN_ENGINE, --engine)")
    return name


# How often a running attempt's activity heartbeats Temporal, and how long Temporal waits for a
# heartbeat before it takes the attempt's worker for lost (the next attempt then runs elsewhere).
HEARTBEAT_S = 10.0
_HEARTBEAT_RANGE = (0.1, 20.0)
HEARTBEAT_TIMEOUT_S = 30.0
_HEARTBEAT_TIMEOUT_RANGE = (1.0, 3600.0)
# A worker starts the workflow of a job pending this long without one (its submit could not
# reach Temporal), or of an incomplete job whose next attempt is this late (its workflow was lost).
RESUBMIT_AFTER_S = 10.0
_RESUBMIT_AFTER_RANGE = (0.0, 3600.0)
# How long a command or the server waits for Temporal to answer one call (start a job's workflow,
# cancel it) before it says Temporal is unavailable; the job stays queued.
RPC_TIMEOUT_S = 30.0
_RPC_TIMEOUT_RANGE = (1.0, 600.0)


@dataclass(frozen=True)
class TemporalSettings:
    address: str = "localhost:7233"
    namespace: str = "default"
    task_queue_prefix: str = ""
    heartbeat_s: float = HEARTBEAT_S
    heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S
    resubmit_after_s: float = RESUBMIT_AFTER_S
    rpc_timeout_s: float = RPC_TIMEOUT_S

    def queue(self, slot: str) -> str:
        return self.task_queue_prefix + QUEUES[slot]

    def queue_of(self, job_type: JobType) -> str:
        return self.queue(job_type.slot)

    def workflow_id(self, job_id: int) -> str:
        """The workflow of a job: one id per job, never reused, so a job cannot run twice. The
        prefix is part of it: two deployments on one namespace (which need their own task
        queues anyway, or each would run the other's jobs) count their job ids apart."""
        return f"{self.task_queue_prefix}ferryman-job-{job_id}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TemporalSettings:
        env = os.environ if env is None else env
        heartbeat_s = _seconds(env, "FERRYMAN_TEMPORAL_HEARTBEAT_S", HEARTBEAT_S, _HEARTBEAT_RANGE)
        timeout_s = _seconds(
            env, "FERRYMAN_TEMPORAL_HEARTBEAT_TIMEOUT_S", HEARTBEAT_TIMEOUT_S, _HEARTBEAT_TIMEOUT_RANGE
        )
        if timeout_s <= heartbeat_s:
            raise UserInputError(
                f"FERRYMAN_TEMPORAL_HEARTBEAT_TIMEOUT_S={timeout_s:g} is not more than"
                f" FERRYMAN_TEMPORAL_HEARTBEAT_S={heartbeat_s:g}: every attempt would time out;"
                " give a timeout a few heartbeats long"
            )
        return cls(
            address=env.get("FERRYMAN_TEMPORAL_ADDRESS") or cls.address,
            namespace=env.get("FERRYMAN_TEMPORAL_NAMESPACE") or cls.namespace,
            task_queue_prefix=env.get("FERRYMAN_TEMPORAL_TASK_QUEUE_PREFIX") or "",
            heartbeat_s=heartbeat_s,
            heartbeat_timeout_s=timeout_s,
            resubmit_after_s=_seconds(
                env, "FERRYMAN_TEMPORAL_RESUBMIT_AFTER_S", RESUBMIT_AFTER_S, _RESUBMIT_AFTER_RANGE
            ),
            rpc_timeout_s=_seconds(env, "FERRYMAN_TEMPORAL_RPC_TIMEOUT_S", RPC_TIMEOUT_S, _RPC_TIMEOUT_RANGE),
        )


def _seconds(env: Mapping[str, str], name: str, default: float, allowed: tuple[float, float]) -> float:
    text = env.get(name, "")
    if not text.strip():
        return default
    low, high = allowed
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not low <= seconds <= high:  # also NaN
        raise UserInputError(f"{name}={text!r}: give seconds from {low:g} to {high:g}")
    return seconds
