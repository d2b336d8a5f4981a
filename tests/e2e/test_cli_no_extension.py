"""A wheel built without the C extension (no compiler at install) still syncs: the record path's
Python loop, forced with FERRYMAN_NO_EXTENSION=1, moves and counts the same records as the
extension's scan. `make check-no-extension` builds such a wheel and runs the unit tests that way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.test_cli_jobs import Cli

SOURCE = {"count": 3000, "streams": 3, "state_every": 500}


def _sync(tmp_path: Path, name: str, **env: str) -> tuple[dict[str, Any], dict[str, list[int]]]:
    cli = Cli(tmp_path / name, **env)
    out = tmp_path / f"{name}-out"
    summary = cli.json(
        "sync",
        "--source", "builtin:source-bench", "--source-config", json.dumps(SOURCE),
        "--destination", "builtin:destination-jsonl", "--destination-config", json.dumps({"path": str(out)}),
    )  # fmt: skip
    ids = {
        path.stem: [json.loads(line)["id"] for line in path.read_text().splitlines()]
        for path in sorted(out.glob("*.jsonl"))
    }
    return summary, ids


def test_a_sync_moves_and_counts_the_same_records_with_or_without_the_extension(tmp_path: Path) -> None:
    results = {flag: _sync(tmp_path, f"home-{flag}", FERRYMAN_NO_EXTENSION=flag) for flag in ("1", "0")}
    for summary, ids in results.values():
        assert summary["status"] == "completed"
        assert ids == {f"stream_{n}": list(range(1, 3001)) for n in range(3)}
        assert summary["states_committed"] == summary["states_emitted"] == 18
        assert summary["bytes_committed"] == summary["bytes_emitted"] > 3000 * 3 * 400
    counts = {flag: [_counts(s) for s in summary["streams"]] for flag, (summary, _) in results.items()}
    assert counts["1"] == counts["0"] == [(f"stream_{n}", 3000, 3000, 1347786, 1347786) for n in range(3)]


def _counts(stream: dict[str, Any]) -> tuple[str, int, int, int, int]:
    keys = ("records_emitted", "records_committed", "bytes_emitted", "bytes_committed")
    return (stream["name"], *(stream[key] for key in keys))
