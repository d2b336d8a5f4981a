"""A source whose spec is not kept (made by a Ferryman older than the spec column, whose rows
are NULL, or whose connector's ``spec`` failed at create) gets it when its config is updated:
a config the spec refuses is refused in one line, a good one is stored with the spec, and from
then on ``sources show`` masks what the spec marks secret, not only credential-like names."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx

from ferryman.store import open_store
from tests.conftest import scripted_source
from tests.e2e.api_server import running_server
from tests.e2e.test_cli_jobs import Cli

BLOB = "opaque-4d1c9e7b2a"  # under a name no guessing takes for a credential: only the spec says so
SENT = "opaque-sent-77e1f0"  # the secret of a refused update: must appear nowhere
SPEC = {
    "connectionSpecification": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "required": ["region"],
        "properties": {
            "region": {"type": "string", "enum": ["eu", "us"]},
            "blob": {"type": "string", "airbyte_secret": True},
        },
    }
}


def _scripted(tmp_path: Path) -> str:
    return f"exec:{scripted_source(tmp_path)}"


def _kept(home: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    actor = open_store(f"sqlite:///{home / 'ferryman.db'}").get_actor("source", "s")
    return actor.config, actor.spec


def test_an_update_fetches_and_keeps_the_spec_an_older_ferryman_did_not(tmp_path: Path) -> None:
    steps = json.dumps([{"spec": SPEC}])
    cli = Cli(tmp_path / "home", SCRIPTED_SPEC_STEPS=steps)
    connector = _scripted(tmp_path)
    cli(
        "sources",
        "create",
        "s",
        "--connector",
        connector,
        "--config",
        json.dumps({"region": "eu", "blob": BLOB}),
    )
    with sqlite3.connect(cli.home / "ferryman.db") as db:  # as migration 0003 left an older row
        db.execute("UPDATE actors SET spec = NULL")
    assert _kept(cli.home) == ({"region": "eu", "blob": BLOB}, None)
    assert cli.json("sources", "show", "s")["config"]["blob"] == BLOB  # by names alone: not masked
    cli.printed.clear()

    answers: list[str] = []
    with (
        running_server(cli.home, env={"SCRIPTED_SPEC_STEPS": steps}) as server,
        httpx.Client(base_url=server.v1, timeout=60) as client,
    ):
        url = f"/sources/{client.get('/sources').json()['data'][0]['sourceId']}"
        refused = client.patch(url, json={"configuration": {"region": "mars", "blob": SENT}})
        answers.append(refused.text)
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"] == (
            f"the configuration does not fulfill the specification of {connector}: "
            "'region' must be one of 'eu', 'us'"
        )
        assert _kept(cli.home) == ({"region": "eu", "blob": BLOB}, None)  # nothing written

        kept = client.patch(url, json={"configuration": {"region": "us"}})
        answers.append(kept.text)
        assert kept.status_code == 200, kept.text
        assert kept.json()["configuration"]["blob"] == "**********"
    assert _kept(cli.home) == ({"region": "us", "blob": BLOB}, SPEC)

    assert cli.json("sources", "show", "s")["config"] == {"region": "us", "blob": "**********"}
    logged = (cli.home / "server.log").read_text()
    assert all(BLOB not in text and SENT not in text for text in [*cli.printed, *answers, logged])
    assert SENT.encode() not in (cli.home / "ferryman.db").read_bytes()


def _patched(home: Path, steps: str, configuration: dict[str, Any]) -> httpx.Response:
    with (
        running_server(home, env={"SCRIPTED_SPEC_STEPS": steps}) as server,
        httpx.Client(base_url=server.v1, timeout=60) as client,
    ):
        url = f"/sources/{client.get('/sources').json()['data'][0]['sourceId']}"
        return client.patch(url, json={"configuration": configuration})


def test_a_spec_that_failed_at_create_is_fetched_again_and_while_it_fails_nothing_is_checked(
    tmp_path: Path,
) -> None:
    failing = json.dumps([{"exit": 1}])
    cli = Cli(tmp_path / "home", SCRIPTED_SPEC_STEPS=failing)
    connector = _scripted(tmp_path)
    cli("sources", "create", "s", "--connector", connector, "--config", json.dumps({"region": "eu"}))
    assert _kept(cli.home) == ({"region": "eu"}, None)

    # Its spec still fails: the update is stored unchecked, as before (not refused for it).
    answer = _patched(cli.home, failing, {"region": "mars", "blob": BLOB})
    assert answer.status_code == 200, answer.text
    assert _kept(cli.home) == ({"region": "mars", "blob": BLOB}, None)

    # Now it answers: the stored config is checked as the update makes it, and kept with the spec.
    answer = _patched(cli.home, json.dumps([{"spec": SPEC}]), {"blob": SENT})
    assert answer.status_code == 422 and "'region' must be one of 'eu', 'us'" in answer.text, answer.text
    assert SENT not in answer.text
    answer = _patched(cli.home, json.dumps([{"spec": SPEC}]), {"region": "us"})
    assert answer.status_code == 200, answer.text
    assert _kept(cli.home) == ({"region": "us", "blob": BLOB}, SPEC)
    assert cli.json("sources", "show", "s")["config"] == {"region": "us", "blob": "**********"}
