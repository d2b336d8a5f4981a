"""The parts of PyPI installs that need neither pip nor the network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ferryman.connectors.pip_errors import pip_failure
from ferryman.connectors.pypi import (
    MARKER,
    canonical_name,
    choose_entry_point,
    ensure_installed,
    launch_command,
    list_installed,
)
from ferryman.connectors.versions import version_key
from ferryman.errors import ConnectorInstallError


def test_versions_sort_like_pep_440() -> None:
    ordered = ["0.9", "1.0.dev1", "1.0a1", "1.0b2", "1.0rc1", "1.0", "1.0.post1", "1.9.0", "1.10"]
    assert sorted(reversed(ordered), key=version_key) == ordered
    assert version_key("1.0") == version_key("1.0.0") == version_key("v1.0.0")
    assert version_key("1!0.1") > version_key("99.0")
    assert version_key("not a version") < version_key("0.0.1")


def test_canonical_name() -> None:
    assert canonical_name("Airbyte_Source.Faker") == "airbyte-source-faker"


@pytest.mark.parametrize(
    ("name", "scripts", "expected"),
    [
        ("airbyte-source-faker", {"source-faker": "source_faker.run:run"}, "source-faker"),
        (
            "airbyte-source-x",
            {"destination-x": "d:run", "source-x": "s.run:run", "helper": "h:main"},
            "source-x",
        ),
        ("source-y", {"source-y": "y:run", "source-a": "a:run"}, "source-y"),
        ("airbyte-kit", {"destination-b": "b:run", "source-a": "a:run"}, "destination-b"),
        ("airbyte-source-sftp-bulk", {"airbyte-source-sftp-bulk": "s.run:run"}, "airbyte-source-sftp-bulk"),
        ("my-dest", {"airbyte-destination-x": "d:run", "my-dest": "d:cli"}, "airbyte-destination-x"),
        ("airbyte-source-z", {"airbyte-source-z": "z:run", "source-z": "z:run2"}, "source-z"),
        ("six", {}, None),
        ("tool", {"tool": "tool:main", "source": "x:run"}, None),
        ("broken", {"source-broken": "not a module"}, None),
    ],
)
def test_choose_entry_point(name: str, scripts: dict[str, str], expected: str | None) -> None:
    chosen = choose_entry_point(name, scripts)
    assert (chosen[0] if chosen else None) == expected
    if chosen:
        assert chosen[1] == scripts[chosen[0]]


def test_entry_point_extras_are_dropped() -> None:
    assert choose_entry_point("p", {"source-p": "p.run : main [cli]"}) == ("source-p", "p.run:main")


def test_launcher_runs_the_entry_point_with_the_arguments(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "entry.py").write_text(
        "import json, sys\nclass Holder:\n"
        "    @staticmethod\n    def main():\n        print(json.dumps(sys.argv))\n        return 5\n"
    )
    command = launch_command(Path(sys.executable), "source-demo", "entry:Holder.main")
    env = {**os.environ, "PYTHONPATH": str(package)}
    # A module of the same name in the working directory must not shadow the connector's.
    shadow = tmp_path / "cwd"
    shadow.mkdir()
    (shadow / "entry.py").write_text("raise SystemExit('imported from the working directory')\n")
    done = subprocess.run([*command, "read", "--config", "c.json"], env=env, cwd=shadow, capture_output=True)
    assert done.returncode == 5
    assert json.loads(done.stdout) == ["source-demo", "read", "--config", "c.json"]


def test_launcher_rejects_a_bad_entry_point() -> None:
    with pytest.raises(ValueError, match="not an entry point"):
        launch_command(Path(sys.executable), "source-x", "no colon")


def fake_install(venvs: Path, dirname: str, marker: object, python: bool = True) -> Path:
    venv = venvs / dirname
    (venv / "bin").mkdir(parents=True)
    if python:
        (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / MARKER).write_text(marker if isinstance(marker, str) else json.dumps(marker))
    return venv


def marker(name: str, version: str) -> dict[str, str]:
    return {"name": name, "version": version, "script": "source-x", "entry_point": "x.run:run"}


def test_only_complete_installs_are_listed_and_reused(tmp_path: Path) -> None:
    fake_install(tmp_path, "airbyte-source-x-1.2.0", marker("airbyte-source-x", "1.2.0"))
    fake_install(tmp_path, "airbyte-source-x-1.10.0", marker("airbyte-source-x", "1.10.0"))
    fake_install(tmp_path, "airbyte-source-x-2.0.0", "{not json")
    fake_install(tmp_path, "airbyte-source-x-3.0.0", marker("airbyte-source-x", "3.0.0"), False)
    fake_install(tmp_path, "airbyte-source-x-4.0.0", {"name": "airbyte-source-x"})
    fake_install(tmp_path, ".staging-airbyte-source-x-q", marker("airbyte-source-x", "9.0"))
    fake_install(tmp_path, "airbyte-source-xy-0.1", marker("airbyte-source-xy", "0.1"))

    listed = [(c.name, c.version) for c in list_installed(tmp_path)]
    assert listed == [
        ("airbyte-source-x", "1.2.0"),
        ("airbyte-source-x", "1.10.0"),
        ("airbyte-source-xy", "0.1"),
    ]
    # Found without pip: no staging dir, no lock, no log appears.
    before = sorted(os.listdir(tmp_path))
    newest = ensure_installed("airbyte_source_x", None, tmp_path)
    assert (newest.version, newest.venv) == ("1.10.0", tmp_path / "airbyte-source-x-1.10.0")
    assert newest.command[:2] == [str(newest.venv / "bin" / "python"), "-c"]
    assert ensure_installed("airbyte-source-x", "1.2", tmp_path).version == "1.2.0"
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize(
    ("name", "version"), [("../evil", None), ("a b", None), ("ok", "1.0/../x"), ("ok", "")]
)
def test_invalid_names_and_versions(tmp_path: Path, name: str, version: str | None) -> None:
    with pytest.raises(ConnectorInstallError):
        ensure_installed(name, version, tmp_path)
    assert list(tmp_path.iterdir()) == []


NOT_FOUND = (
    "ERROR: Could not find a version that satisfies the requirement {req} (from versions: {v})\n"
    "ERROR: No matching distribution found for {req}\n"
)


LOG = Path("/venvs/x-install.log")


def test_pip_failure_unknown_package() -> None:
    output = NOT_FOUND.format(req="nope", v="none")
    message = pip_failure("nope", None, output, 1, LOG)
    assert message == "PyPI has no package nope: check the name, e.g. pypi:airbyte-source-faker"
    message = pip_failure("nope", "1.0", NOT_FOUND.format(req="nope==1.0", v="none"), 1, LOG)
    assert message.startswith("PyPI has no package nope (or no version 1.0): check the name")


def test_pip_failure_unknown_version_names_the_latest() -> None:
    output = NOT_FOUND.format(req="six==99", v="1.9.0, 1.10.0, 1.2.0")
    message = pip_failure("six", "99", output, 1, LOG)
    assert message == "PyPI has package six but no version 99: pick an existing one, e.g. pypi:six==1.10.0"


def test_pip_failure_offline() -> None:
    output = (
        "WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError("
        "Failed to establish a new connection: [Errno 111] Connection refused')': /simple/x/\n"
    ) + NOT_FOUND.format(req="x", v="none")
    message = pip_failure("x", None, output, 1, LOG)
    assert message.startswith("could not reach the package index to install x:")


def test_pip_failure_other_python() -> None:
    output = (
        "ERROR: Ignored the following versions that require a different python version: "
        "2.0 Requires-Python >=3.99; 2.1 Requires-Python >=3.99\n"
    ) + NOT_FOUND.format(req="x==2.0", v="1.0")
    message = pip_failure("x", "2.0", output, 1, LOG)
    assert message.startswith("x==2.0 does not support Python ")


def test_a_missing_dependency_is_not_blamed_on_the_python_version() -> None:
    # What airbyte-source-file 0.5.40 gets: a dependency pinned to a version that does not
    # exist, next to an unrelated line about versions for another Python.
    output = (
        "ERROR: Ignored the following versions that require a different python version: "
        "1.26.0 Requires-Python >=3.12\n"
        "ERROR: Could not find a version that satisfies the requirement numpy==9.9.9 "
        "(from airbyte-source-file) (from versions: 1.25.0, 1.25.1)\n"
        "ERROR: No matching distribution found for numpy==9.9.9\n"
    )
    message = pip_failure("airbyte-source-file", "0.5.40", output, 1, LOG)
    assert message.splitlines() == [
        "pip could not install airbyte-source-file==0.5.40 (exit code 1); it said:",
        *(f"  {line}" for line in output.splitlines()),
        f"pip's full output: {LOG}",
    ]
    assert "does not support Python" not in message


def test_pip_failure_keeps_every_error_line_and_the_last_lines() -> None:
    build_output = [f"      line {n} of the build" for n in range(30)]
    output = "\n".join(
        [
            "ERROR: Command errored out with exit status 1:",
            *build_output,
            "      RuntimeError: setup.py says no",
            "[notice] A new release of pip is available",
            "  note: This error originates from a subprocess, and is likely not a problem with pip.",
        ]
    )
    lines = pip_failure("x", None, output, 1, LOG).splitlines()
    assert lines[1] == "  ERROR: Command errored out with exit status 1:"
    assert lines[2] == "  ..."
    assert "      RuntimeError: setup.py says no" in [line[2:] for line in lines]
    assert not any("[notice]" in line for line in lines)
    assert len(lines) == 1 + 2 + 12 + 1
    assert pip_failure("x", None, "", 2, LOG).splitlines()[1] == "  (nothing on stderr)"
