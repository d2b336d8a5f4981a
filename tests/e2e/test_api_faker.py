"""airbyte-source-faker from PyPI, driven entirely through Airbyte's SDK against `ferryman server`:
the way a user of Airbyte's API would set it up, with a connector definition for `faker`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from airbyte_api import AirbyteAPI, api, models

from ferryman.connectors import ResolvedConnector
from tests.conftest import FAKER_REF
from tests.e2e.api_server import Server, ferryman, running_server

pytestmark = pytest.mark.slow


@pytest.fixture
def served(tmp_path: Path, venvs_dir: Path, faker: ResolvedConnector) -> Iterator[tuple[Server, AirbyteAPI]]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "venvs").symlink_to(venvs_dir)  # faker is installed once per session
    assert ferryman(home, "definitions", "add", "faker", FAKER_REF).returncode == 0
    created = ferryman(home, "applications", "create", "airflow", "--json")
    app = json.loads(created.stdout)
    with running_server(home) as server:
        security = models.Security(
            client_credentials=models.SchemeClientCredentials(
                client_id=app["client_id"],
                client_secret=app["client_secret"],
                token_url="v1/applications/token",
            )
        )
        # The SDK's client waits 5 s by default (httpx's); a source's first spec (faker imports
        # the CDK) and a connection's discover take longer on a loaded 2-core machine.
        yield server, AirbyteAPI(server_url=server.v1, security=security, timeout_ms=120_000)


def _sync(sdk: AirbyteAPI, connection_id: str) -> Any:
    job = sdk.jobs.create_job(
        request=models.JobCreateRequest(connection_id=connection_id, job_type=models.JobTypeEnum.SYNC)
    ).job_response
    while job.status not in ("succeeded", "failed", "cancelled"):  # the test's timeout bounds this
        time.sleep(0.25)
        job = sdk.jobs.get_job(request=api.GetJobRequest(job_id=job.job_id)).job_response
    return job


STREAMS = ("users", "products", "purchases")


def test_faker_through_the_sdk_lands_in_duckdb_and_the_second_sync_is_incremental(
    served: tuple[Server, AirbyteAPI],
) -> None:
    server, sdk = served
    workspace = sdk.workspaces.list_workspaces(request=api.ListWorkspacesRequest()).workspaces_response.data[
        0
    ]
    source = sdk.sources.create_source(
        request=models.SourceCreateRequest(
            name="faker",
            workspace_id=workspace.workspace_id,
            configuration=models.SourceFaker(count=300, seed=7, always_updated=False),
        )
    ).source_response
    path = server.home / "faker.duckdb"
    destination = sdk.destinations.create_destination(
        request=models.DestinationCreateRequest(
            name="duck",
            workspace_id=workspace.workspace_id,
            configuration=models.DestinationDuckdb(destination_path=str(path)),
        )
    ).destination_response
    # Incremental, named: a connection with no streams named reads them in full refresh, which
    # reads everything again at each sync (a full-refresh stream's state is the job's alone).
    incremental = models.ConnectionSyncModeEnum.INCREMENTAL_APPEND
    streams = [models.StreamConfiguration(name=name, syncMode=incremental) for name in STREAMS]
    connection = sdk.connections.create_connection(
        request=models.ConnectionCreateRequest(
            source_id=source.source_id,
            destination_id=destination.destination_id,
            name="faker-to-duck",
            configurations=models.StreamConfigurations(streams=streams),
        )
    ).connection_response

    first = _sync(sdk, connection.connection_id)
    assert first.status == "succeeded"
    with duckdb.connect(str(path), read_only=True) as db:
        held = {
            table: db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]  # type: ignore[index]
            for (table,) in db.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
    assert held["users"] == 300 and held["purchases"] > 0 and held["products"] > 0
    assert first.rows_synced == sum(held.values())

    second = _sync(sdk, connection.connection_id)
    assert second.status == "succeeded"
    assert second.rows_synced == 0  # from the committed state: nothing new
    with duckdb.connect(str(path), read_only=True) as db:
        for table, count in held.items():
            assert db.execute(f'SELECT count(*) FROM "{table}"').fetchone() == (count,)  # all kept
