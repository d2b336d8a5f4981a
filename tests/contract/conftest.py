"""Fixtures of the worker contract tests: launchers, scripted connectors, attempt contexts."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ferryman.connectors import ConnectorRef, ResolvedConnector
from ferryman.launchers import Launcher, LocalLauncher
from ferryman.workers.models import AttemptContext

CONNECTORS = Path(__file__).parent.parent / "connectors"

# One entry per launcher the contract must hold for; a Docker launcher joins this list later.
LAUNCHERS: dict[str, Callable[[], Launcher]] = {"local": LocalLauncher}


@pytest.fixture(params=sorted(LAUNCHERS))
def launcher(request: pytest.FixtureRequest) -> Launcher:
    return LAUNCHERS[request.param]()


def scripted(name: str, env: dict[str, str] | None = None) -> ResolvedConnector:
    path = CONNECTORS / f"{name}.py"
    assert path.exists(), path
    return ResolvedConnector(
        ConnectorRef("exec", str(path)), [sys.executable, str(path)], env=dict(env or {})
    )


@pytest.fixture
def source() -> ResolvedConnector:
    """tests/connectors/scripted_source.py: runs the steps listed in its config."""
    return scripted("scripted_source")


@pytest.fixture
def spec_source() -> Callable[[list[dict[str, Any]]], ResolvedConnector]:
    """The scripted source with the steps of its ``spec`` command (spec has no config)."""

    def make(steps: list[dict[str, Any]]) -> ResolvedConnector:
        return scripted("scripted_source", {"SCRIPTED_SPEC_STEPS": json.dumps(steps)})

    return make


@pytest.fixture
def destination() -> ResolvedConnector:
    """tests/connectors/scripted_destination.py: misbehaves as its config says."""
    return scripted("scripted_destination")


@pytest.fixture
def context(attempt: AttemptContext) -> Callable[..., AttemptContext]:
    """The test's attempt context, with some lifecycle settings changed."""

    def make(**lifecycle: float) -> AttemptContext:
        return dataclasses.replace(attempt, lifecycle=dataclasses.replace(attempt.lifecycle, **lifecycle))

    return make
