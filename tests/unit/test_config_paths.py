"""Which config values are paths, when an actor is stored and when a local process runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferryman.connectors import ConnectorRef, ResolvedConnector
from ferryman.connectors.config_paths import settle_paths
from ferryman.errors import UserInputError
from ferryman.workers.local_paths import local_root_for, to_host, to_mount

FILE_SOURCE = ConnectorRef("pypi", "airbyte-source-file", "0.5.39")
DOCKER_SOURCE = ConnectorRef("docker", "airbyte/source-file:0.5.39")
JSONL = ConnectorRef("builtin", "destination-jsonl")


def test_builtin_path_fields_are_always_made_absolute(tmp_path: Path) -> None:
    notes: list[str] = []
    settled = settle_paths(JSONL, {"path": "out/files"}, tmp_path, tmp_path / "local", notes.append)
    assert settled == {"path": str(tmp_path / "out" / "files")}
    assert notes == [f"config field 'path': 'out/files' is stored as '{tmp_path / 'out' / 'files'}'"]


def test_a_third_party_path_is_resolved_only_when_clearly_a_local_file(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a\n1\n")
    config = {
        "url": "data.csv",  # exists here
        "provider": {"storage": "local", "key_file": "./keys/id.pem"},  # ./ says it is a path
        "base_url": "api/v1",  # a path-like key, but nothing here and no ./
        "format": "data.csv",  # exists, but the key is not path-like
        "remote_url": "https://example.com/data.csv",
        "home_path": "~/data.csv",
        "files": ["data.csv"],  # "files" is not a path-like key
        "__injected_declarative_manifest": {"path": "data.csv"},  # a manifest: code, not input
    }
    settled = settle_paths(FILE_SOURCE, config, tmp_path, tmp_path / "local")
    assert settled == {
        **config,
        "url": str(tmp_path / "data.csv"),
        "provider": {"storage": "local", "key_file": str(tmp_path / "keys" / "id.pem")},
    }


def test_a_docker_connector_cannot_see_a_relative_path_one_line_says_where_to_put_it(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a\n1\n")
    with pytest.raises(UserInputError) as caught:
        settle_paths(DOCKER_SOURCE, {"url": "data.csv"}, tmp_path, tmp_path / "local")
    assert str(caught.value) == (
        f"config field 'url' names 'data.csv' on this machine, which a docker: connector cannot see: "
        f"put it under {tmp_path / 'local'} and write /local/data.csv"
    )
    # /local itself is what a container sees: left as it is.
    assert settle_paths(DOCKER_SOURCE, {"url": "/local/data.csv"}, tmp_path, tmp_path) == {
        "url": "/local/data.csv"
    }


def test_local_is_mapped_for_local_processes_only_and_mapped_back(tmp_path: Path) -> None:
    root = tmp_path / "local"
    config = {"url": "/local/in/a.csv", "list": ["/local", "/localized", "/other/local/x"], "n": 3}
    host = to_host(config, root)
    assert host == {"url": f"{root}/in/a.csv", "list": [str(root), "/localized", "/other/local/x"], "n": 3}
    assert root.is_dir()  # a destination told to write /local/x finds the directory
    assert to_mount(host, root) == config

    local = ResolvedConnector(FILE_SOURCE, ["python"])
    container = ResolvedConnector(DOCKER_SOURCE, [], image="airbyte/source-file:0.5.39")
    assert local_root_for(local, root) == root
    assert local_root_for(container, root) is None
    assert to_host(config, None) is config
