"""Third-party connectors from PyPI that nobody here wrote, driven through the CLI as a user would.

* ``airbyte-source-file`` reads CSV, JSON lines and Parquet files under ``/local`` (run as a
  local process: ``/local`` is ``$FERRYMAN_HOME/local``, as in Docker), and fails clearly on a
  file that is gone;
* ``airbyte-source-declarative-manifest`` reads a small HTTP API served by the test: an
  incremental stream resumes from its stored state, a 500 is retried inside the connector, and a
  401 is a ``config_error`` that ends the job after one attempt; a paged full-refresh stream is
  read whole by every sync (a connection's, and an ad-hoc one from a saved state), and a retry
  that resumes it after a failed page keeps the pages read before.

Each package is installed once per session into the shared venvs dir (``FERRYMAN_TEST_VENVS``
keeps them between sessions), started when the session starts (tests/conftest.py,
``early_installs``); after that, the tests here take about a minute in all.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import duckdb
import pytest

from ferryman.connectors.pypi import InstalledConnector, ensure_installed
from tests.conftest import FILE_REF, MANIFEST_REF
from tests.e2e.test_cli_jobs import Cli, committed, emitted

pytestmark = pytest.mark.slow

# For tests about one attempt: a failed sync is not tried again, so no backoff is waited out.
ONE_ATTEMPT = {"SYNC_JOB_MAX_ATTEMPTS": "1"}


def installed(ref: str, venvs_dir: Path) -> InstalledConnector:
    name, _, version = ref.removeprefix("pypi:").partition("==")
    return ensure_installed(name, version, venvs_dir)


@pytest.fixture(scope="session")
def source_file(venvs_dir: Path) -> InstalledConnector:
    return installed(FILE_REF, venvs_dir)


@pytest.fixture(scope="session")
def declarative_manifest(venvs_dir: Path) -> InstalledConnector:
    return installed(MANIFEST_REF, venvs_dir)


def cli_with_venvs(tmp_path: Path, venvs_dir: Path, **env: str) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    (home / "venvs").symlink_to(venvs_dir)  # installed once per session
    return Cli(home, **env)


def duckdb_destination(cli: Cli, path: Path) -> None:
    config = json.dumps({"path": str(path)})
    cli("destinations", "create", "db", "--connector", "builtin:destination-duckdb", "--config", config)


def rows(path: Path, table: str, *fields: str) -> list[tuple[Any, ...]]:
    """The records' ``fields`` as text, read from destination-duckdb's typed columns (a whole
    number typed ``number`` by the source reads as ``"1"``, as it was sent)."""

    def text(value: Any) -> str | None:
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return None if value is None else str(value)

    columns = ", ".join(f'"{name}"' for name in fields)
    with duckdb.connect(str(path), read_only=True) as db:
        found = db.execute(f'select {columns} from "{table}"').fetchall()
    return sorted(tuple(text(value) for value in row) for row in found)


def failures(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for attempt in document["attempts"] for f in attempt["failures"]]


# --- airbyte-source-file ------------------------------------------------------------------------


def write_people(local: Path) -> None:
    """The same three people as CSV, JSON lines and Parquet."""
    local.mkdir(parents=True, exist_ok=True)
    people = [(1, "ada"), (2, "grace"), (3, "edsger")]
    (local / "people.csv").write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in people))
    (local / "people.jsonl").write_text("".join(json.dumps({"id": i, "name": n}) + "\n" for i, n in people))
    with duckdb.connect() as db:
        values = ", ".join(f"({i}, '{n}')" for i, n in people)
        query = f"select * from (values {values}) t(id, name)"
        db.execute(f"copy ({query}) to '{local / 'people.parquet'}' (format parquet)")


def file_source(cli: Cli, name: str, file_format: str, url: str) -> None:
    config = {"dataset_name": name, "format": file_format, "url": url, "provider": {"storage": "local"}}
    cli("sources", "create", name, "--connector", FILE_REF, "--config", json.dumps(config))


def test_source_file_reads_csv_jsonl_and_parquet_under_local(
    tmp_path: Path, venvs_dir: Path, source_file: InstalledConnector
) -> None:
    cli = cli_with_venvs(tmp_path, venvs_dir)
    write_people(cli.home / "local")
    database = tmp_path / "people.duckdb"
    duckdb_destination(cli, database)
    for file_format, suffix in (("csv", "csv"), ("jsonl", "jsonl"), ("parquet", "parquet")):
        name = f"people_{file_format}"
        file_source(cli, name, file_format, f"/local/people.{suffix}")
        cli("connections", "create", name, "--source", name, "--destination", "db")
        document = cli.json("connections", "sync", name)
        assert document["job"]["status"] == "succeeded", document
        assert committed(document) == {name: 3}
        assert rows(database, name, "id", "name") == [("1", "ada"), ("2", "grace"), ("3", "edsger")]
    # The stored config keeps /local: the same source runs in Docker, where /local is a mount.
    assert cli.json("sources", "show", "people_csv")["config"]["url"] == "/local/people.csv"


def test_source_file_on_a_file_that_is_gone_fails_naming_it(
    tmp_path: Path, venvs_dir: Path, source_file: InstalledConnector
) -> None:
    cli = cli_with_venvs(tmp_path, venvs_dir, **ONE_ATTEMPT)
    local = cli.home / "local"
    write_people(local)
    duckdb_destination(cli, tmp_path / "people.duckdb")
    file_source(cli, "gone", "csv", "/local/people.csv")
    cli("connections", "create", "gone", "--source", "gone", "--destination", "db")
    (local / "people.csv").unlink()

    result = cli("connections", "sync", "gone", code=1)
    assert "sync failed" in result.stdout + result.stderr
    job_id = cli.json("jobs", "list", "--connection", "gone")["jobs"][0]["id"]
    document = cli.json("jobs", "show", str(job_id))
    assert document["job"]["status"] == "failed"
    found = failures(document)
    assert found and found[0]["type"] in ("system_error", "config_error")
    # The file it looked for, in the host directory /local stands for.
    assert any(str(local / "people.csv") in (f.get("internal_message") or f["message"]) for f in found), found


# --- airbyte-source-declarative-manifest ----------------------------------------------------------

TOKEN = "tok-5b1e-test-api"
MANIFEST: dict[str, Any] = {
    "version": "6.5.2",
    "type": "DeclarativeSource",
    "check": {"type": "CheckStream", "stream_names": ["items"]},
    # Without a spec of its own, the runner fails every command but spec ("Unable to find spec").
    "spec": {
        "type": "Spec",
        "connection_specification": {
            "type": "object",
            "required": ["base_url", "api_key", "start_date"],
            "properties": {
                "base_url": {"type": "string"},
                "api_key": {"type": "string", "airbyte_secret": True},
                "start_date": {"type": "string"},
            },
        },
    },
    "streams": [
        {
            "type": "DeclarativeStream",
            "name": "items",
            "primary_key": ["id"],
            "schema_loader": {
                "type": "InlineSchemaLoader",
                "schema": {
                    "type": "object",
                    "properties": {"id": {"type": "integer"}, "updated_at": {"type": "string"}},
                },
            },
            "retriever": {
                "type": "SimpleRetriever",
                "requester": {
                    "type": "HttpRequester",
                    "url_base": "{{ config['base_url'] }}",
                    "path": "/items",
                    "http_method": "GET",
                    "authenticator": {"type": "BearerAuthenticator", "api_token": "{{ config['api_key'] }}"},
                    # The default mapping (500: retry, 401: config_error), with a short wait.
                    "error_handler": {
                        "type": "DefaultErrorHandler",
                        "max_retries": 3,
                        "backoff_strategies": [
                            {"type": "ConstantBackoffStrategy", "backoff_time_in_seconds": 0.1}
                        ],
                    },
                },
                "record_selector": {
                    "type": "RecordSelector",
                    "extractor": {"type": "DpathExtractor", "field_path": ["items"]},
                },
            },
            "incremental_sync": {
                "type": "DatetimeBasedCursor",
                "cursor_field": "updated_at",
                "datetime_format": "%Y-%m-%dT%H:%M:%SZ",
                "start_datetime": "{{ config['start_date'] }}",
                "start_time_option": {
                    "type": "RequestOption",
                    "inject_into": "request_parameter",
                    "field_name": "since",
                },
            },
        }
    ],
}


@dataclass
class Api:
    """A small HTTP API: items updated after ``since``, behind a bearer token."""

    items: list[dict[str, Any]] = field(default_factory=list)
    errors_to_send: int = 0  # answer this many requests with a 500 first
    page_errors: dict[int, int] = field(default_factory=dict)  # page of /pages -> 500s to send
    requests: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # (status, query)
    url: str = ""

    def answer(
        self, authorization: str | None, path: str, query: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        if authorization != f"Bearer {TOKEN}":
            return 401, {"error": "unauthorized"}
        if self.errors_to_send > 0:
            self.errors_to_send -= 1
            return 500, {"error": "try again"}
        if path == "/pages":  # every item, two a page, for a full-refresh stream
            page = int(query.get("page", "1"))
            if self.page_errors.get(page, 0) > 0:
                self.page_errors[page] -= 1
                return 500, {"error": "try again"}
            found = self.items[2 * (page - 1) : 2 * page]
            return 200, {"items": found, "next": page + 1 if len(self.items) > 2 * page else None}
        since = query.get("since", "")
        return 200, {"items": [item for item in self.items if item["updated_at"] > since]}


@pytest.fixture
def api() -> Iterator[Api]:
    served = Api(items=[{"id": n, "updated_at": f"2024-01-0{n}T00:00:00Z"} for n in (1, 2, 3)])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            status, body = served.answer(self.headers.get("Authorization"), url.path, query)
            served.requests.append((status, query))
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served
    server.shutdown()
    server.server_close()
    thread.join()


def paged_manifest() -> dict[str, Any]:
    """MANIFEST's stream as ``pages``: no cursor (full refresh), read page by page from /pages.
    The CDK checkpoints such a stream (resumable full refresh): a STATE after each page, and one
    saying the full refresh is complete at its end."""
    manifest = copy.deepcopy(MANIFEST)
    stream = manifest["streams"][0]
    del stream["incremental_sync"]
    stream["name"] = "pages"
    retriever = stream["retriever"]
    retriever["requester"]["path"] = "/pages"
    retriever["paginator"] = {
        "type": "DefaultPaginator",
        "page_token_option": {
            "type": "RequestOption",
            "inject_into": "request_parameter",
            "field_name": "page",
        },
        "pagination_strategy": {
            "type": "CursorPagination",
            "cursor_value": "{{ response.next }}",
            "stop_condition": "{{ not response.next }}",
        },
    }
    manifest["check"]["stream_names"] = ["pages"]
    return manifest


def api_connection(
    cli: Cli, tmp_path: Path, api: Api, token: str = TOKEN, manifest: dict[str, Any] = MANIFEST
) -> Path:
    config = {
        "__injected_declarative_manifest": manifest,
        "base_url": api.url,
        "api_key": token,
        "start_date": "2023-12-31T00:00:00Z",
    }
    cli("sources", "create", "api", "--connector", MANIFEST_REF, "--config", json.dumps(config))
    database = tmp_path / "api.duckdb"
    duckdb_destination(cli, database)
    cli("connections", "create", "api", "--source", "api", "--destination", "db")
    return database


def test_declarative_manifest_incremental_sync_resumes_from_its_state(
    tmp_path: Path, venvs_dir: Path, declarative_manifest: InstalledConnector, api: Api
) -> None:
    cli = cli_with_venvs(tmp_path, venvs_dir)
    database = api_connection(cli, tmp_path, api)
    assert cli.json("connections", "show", "api")["streams"][0]["sync_mode"] == "incremental"
    first = cli.json("connections", "sync", "api")
    assert first["job"]["status"] == "succeeded", first
    assert emitted(first) == {"items": 3}
    assert rows(database, "items", "id") == [("1",), ("2",), ("3",)]

    api.items.append({"id": 4, "updated_at": "2024-01-04T00:00:00Z"})
    api.requests.clear()
    second = cli.json("connections", "sync", "api")
    assert second["job"]["status"] == "succeeded", second
    assert emitted(second) == {"items": 1}  # only the new item
    assert [query.get("since") for _, query in api.requests] == ["2024-01-03T00:00:00Z"]
    assert rows(database, "items", "id") == [("1",), ("2",), ("3",), ("4",)]


def test_declarative_manifest_retries_a_500_within_the_attempt(
    tmp_path: Path, venvs_dir: Path, declarative_manifest: InstalledConnector, api: Api
) -> None:
    cli = cli_with_venvs(tmp_path, venvs_dir, **ONE_ATTEMPT)
    database = api_connection(cli, tmp_path, api)
    api.errors_to_send = 1
    document = cli.json("connections", "sync", "api")
    assert document["job"]["status"] == "succeeded", document
    assert [status for status, _ in api.requests] == [500, 200]
    assert len(document["attempts"]) == 1
    assert rows(database, "items", "id") == [("1",), ("2",), ("3",)]


def test_declarative_manifest_401_is_a_config_error_not_retried(
    tmp_path: Path, venvs_dir: Path, declarative_manifest: InstalledConnector, api: Api
) -> None:
    # The engine's default of three attempts: a config_error must end the job after the first.
    cli = cli_with_venvs(tmp_path, venvs_dir, FERRYMAN_RETRY_BACKOFF_MIN_S="0")
    api_connection(cli, tmp_path, api, token="revoked-token")
    result = cli("connections", "sync", "api", code=1)
    assert "sync failed" in result.stdout + result.stderr
    job_id = cli.json("jobs", "list", "--connection", "api")["jobs"][0]["id"]
    document = cli.json("jobs", "show", str(job_id))
    assert document["job"]["status"] == "failed"
    assert len(document["attempts"]) == 1
    assert failures(document)[0]["type"] == "config_error"
    assert {status for status, _ in api.requests} == {401}


def test_declarative_manifest_full_refresh_stream_is_read_whole_by_every_sync(
    tmp_path: Path, venvs_dir: Path, declarative_manifest: InstalledConnector, api: Api
) -> None:
    # The CDK's last STATE of a full-refresh stream says "complete"; handed to the next job, it
    # made the connector read nothing, and the overwrite left the table empty, the sync succeeded.
    cli = cli_with_venvs(tmp_path, venvs_dir, **ONE_ATTEMPT)
    database = api_connection(cli, tmp_path, api, manifest=paged_manifest())
    stream = cli.json("connections", "show", "api")["streams"][0]
    assert (stream["sync_mode"], stream["destination_sync_mode"]) == ("full_refresh", "overwrite")
    first = cli.json("connections", "sync", "api")
    assert first["job"]["status"] == "succeeded", first
    assert emitted(first) == {"pages": 3}

    api.items.append({"id": 4, "updated_at": "2024-01-04T00:00:00Z"})
    api.requests.clear()
    second = cli.json("connections", "sync", "api")
    assert second["job"]["status"] == "succeeded", second
    assert emitted(second) == committed(second) == {"pages": 4}
    assert [query.get("page") for _, query in api.requests] == [None, "2"]  # from the first page
    assert rows(database, "pages", "id") == [("1",), ("2",), ("3",), ("4",)]


def test_an_ad_hoc_sync_from_a_saved_state_reads_a_full_refresh_stream_whole(
    tmp_path: Path, venvs_dir: Path, declarative_manifest: InstalledConnector, api: Api
) -> None:
    cli = cli_with_venvs(tmp_path, venvs_dir)
    config, state, database = tmp_path / "config.json", tmp_path / "state.json", tmp_path / "adhoc.duckdb"
    source = {"__injected_declarative_manifest": paged_manifest(), "base_url": api.url, "api_key": TOKEN}
    config.write_text(json.dumps({**source, "start_date": "2023-12-31T00:00:00Z"}))
    sync = ("sync", "--source", MANIFEST_REF, "--source-config", str(config), "--save-state", str(state))
    sync += ("--destination-config", json.dumps({"path": str(database)}))
    assert cli.json(*sync)["records_committed"] == 3
    again = cli.json(*sync, "--state", str(state))  # what a scheduled script does
    assert (again["status"], again["records_emitted"], again["records_committed"]) == ("completed", 3, 3)
    assert rows(database, "pages", "id") == [("1",), ("2",), ("3",)]


def test_declarative_manifest_full_refresh_retry_resumes_without_losing_the_first_pages(
    tmp_path: Path, venvs_dir: Path, declarative_manifest: InstalledConnector, api: Api
) -> None:
    # The first attempt checkpoints page 1 (its records replace the table) and fails on page 2;
    # the retry resumes at page 2. Its destination replaced the table again: page 1 was lost
    # from a job that succeeded with every record "committed".
    cli = cli_with_venvs(tmp_path, venvs_dir, SYNC_JOB_MAX_ATTEMPTS="2", FERRYMAN_RETRY_BACKOFF_MIN_S="0")
    database = api_connection(cli, tmp_path, api, manifest=paged_manifest())
    api.page_errors = {2: 4}  # more than the manifest's 3 retries: the attempt fails
    document = cli.json("connections", "sync", "api")
    assert document["job"]["status"] == "succeeded", document
    assert len(document["attempts"]) == 2
    assert [query.get("page") for status, query in api.requests if status == 200] == [None, "2"]
    assert rows(database, "pages", "id") == [("1",), ("2",), ("3",)]
