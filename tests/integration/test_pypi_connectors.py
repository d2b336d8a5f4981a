"""Installing PyPI connectors into managed venvs, for real: no mocks.

Two kinds of tests:

* against PyPI: ``airbyte-source-faker`` (about a minute to install the first time; point
  ``FERRYMAN_TEST_VENVS`` at a directory to keep the venv between sessions), a package that
  does not exist and a small package that is not a connector;
* offline, against wheels built here and served with ``PIP_NO_INDEX``/``PIP_FIND_LINKS``:
  the launcher's argv, choosing the newest version, stale staging dirs, concurrent installs.
"""

from __future__ import annotations

import ensurepip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from ferryman.connectors.pypi import (
    MARKER,
    STAGING_PREFIX,
    InstalledConnector,
    ensure_installed,
    list_installed,
)
from ferryman.connectors.references import parse_reference, resolve
from ferryman.errors import ConnectorInstallError

pytestmark = pytest.mark.slow

FAKER = "airbyte-source-faker"
FAKER_VERSION = "7.2.1"
DEMO = "airbyte-source-ferryman-demo"


# `venvs_dir` is the session's (tests/conftest.py): faker is installed once for the whole run.


@pytest.fixture(scope="session")
def faker(venvs_dir: Path) -> InstalledConnector:
    return ensure_installed(FAKER, FAKER_VERSION, venvs_dir)


def leftovers(venvs_dir: Path) -> list[str]:
    """Entries other than install logs and lock files."""
    return sorted(
        p.name
        for p in venvs_dir.iterdir()
        if not (p.name.endswith("-install.log") or (p.name.startswith(".") and p.suffix == ".lock"))
    )


def staging_dirs(venvs_dir: Path) -> list[Path]:
    return list(venvs_dir.glob(STAGING_PREFIX + "*"))


# --- real PyPI ------------------------------------------------------------------------------


def test_faker_installs_and_answers_spec(faker: InstalledConnector, venvs_dir: Path, tmp_path: Path) -> None:
    assert (faker.name, faker.version) == (FAKER, FAKER_VERSION)
    assert faker.venv == venvs_dir / f"{FAKER}-{FAKER_VERSION}"
    marker = json.loads((faker.venv / MARKER).read_text())
    assert marker["entry_point"] == "source_faker.run:run"
    assert marker["script"] == "source-faker"

    done = subprocess.run([*faker.command, "spec"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    types = [json.loads(line)["type"] for line in done.stdout.splitlines() if line.startswith("{")]
    assert "SPEC" in types


def test_second_call_reuses_the_venv(faker: InstalledConnector, venvs_dir: Path) -> None:
    again = ensure_installed(FAKER, FAKER_VERSION, venvs_dir)
    assert again == faker
    assert staging_dirs(venvs_dir) == []


def test_unversioned_reference_reuses_an_installed_version(
    faker: InstalledConnector, venvs_dir: Path
) -> None:
    before = sorted(p.name for p in venvs_dir.iterdir() if p.is_dir())
    found = ensure_installed(FAKER, None, venvs_dir)
    # The newest installed faker (7.2.1 unless FERRYMAN_TEST_VENVS holds a newer one).
    newest = [c for c in list_installed(venvs_dir) if c.name == FAKER][-1]
    assert found == newest
    assert sorted(p.name for p in venvs_dir.iterdir() if p.is_dir()) == before
    assert faker in list_installed(venvs_dir)


def test_resolve_a_pypi_reference(faker: InstalledConnector, venvs_dir: Path) -> None:
    resolved = resolve(parse_reference(f"pypi:{FAKER}=={FAKER_VERSION}"), venvs_dir)
    assert resolved.command == faker.command
    assert resolved.cache_dir == faker.venv
    assert str(resolved.ref) == f"pypi:{FAKER}=={FAKER_VERSION}"


def test_missing_version_names_an_existing_one(tmp_path: Path) -> None:
    with pytest.raises(ConnectorInstallError) as caught:
        ensure_installed("six", "99.0.0", tmp_path)
    message = str(caught.value)
    assert message.startswith(
        "PyPI has package six but no version 99.0.0: pick an existing one, e.g. pypi:six=="
    )
    assert "\n" not in message
    assert leftovers(tmp_path) == []


def test_missing_package_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ConnectorInstallError) as caught:
        ensure_installed("airbyte-source-this-does-not-exist-ferryman", None, tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("PyPI has no package airbyte-source-this-does-not-exist-ferryman")
    assert "pypi:airbyte-source-faker" in message
    assert leftovers(tmp_path) == []


def test_package_without_connector_entry_point(tmp_path: Path) -> None:
    with pytest.raises(ConnectorInstallError, match="has no connector entry point") as caught:
        ensure_installed("six", "1.16.0", tmp_path)
    assert "\n" not in str(caught.value)
    assert leftovers(tmp_path) == []


# --- offline, with wheels built here --------------------------------------------------------

DEMO_RUN = """\
import json, sys

SPEC = {"connectionSpecification": {"type": "object", "properties": {}}}

def run():
    if sys.argv[1:] == ["spec"]:
        print(json.dumps({"type": "SPEC", "spec": SPEC}))
        return 0
    print(json.dumps({"argv": sys.argv, "version": VERSION}))
    return 3
"""


def build_wheel(directory: Path, version: str, scripts: dict[str, str] | None = None) -> None:
    """A minimal pure-Python wheel of ``DEMO`` with a ``source-ferryman-demo`` console script."""
    scripts = scripts or {"source-ferryman-demo": "demo_connector.run:run"}
    info = f"airbyte_source_ferryman_demo-{version}.dist-info"
    entries = "".join(f"{name} = {value}\n" for name, value in scripts.items())
    files = {
        "demo_connector/__init__.py": "",
        "demo_connector/run.py": f"VERSION = {version!r}\n" + DEMO_RUN,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {DEMO}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: ferryman-tests\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": f"[console_scripts]\n{entries}",
    }
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{info}/RECORD"])
    wheel = directory / f"airbyte_source_ferryman_demo-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)


@pytest.fixture
def wheels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "wheels"
    directory.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(directory))
    return directory


def run_demo(connector: InstalledConnector, *args: str, cwd: Path) -> tuple[int, dict[str, str]]:
    done = subprocess.run([*connector.command, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    return done.returncode, json.loads(done.stdout)


def test_unversioned_installs_latest_then_reuses_the_newest(wheels: Path, tmp_path: Path) -> None:
    venvs = tmp_path / "venvs"
    for version in ("1.9.0", "1.10.0"):
        build_wheel(wheels, version)
    latest = ensure_installed(DEMO, None, venvs)
    assert latest.version == "1.10.0"
    assert latest.venv == venvs / f"{DEMO}-1.10.0"

    older = ensure_installed(DEMO, "1.9.0", venvs)  # installed after 1.10.0, yet older
    assert older.venv == venvs / f"{DEMO}-1.9.0"
    assert ensure_installed(DEMO, None, venvs) == latest
    assert ensure_installed(DEMO.replace("-", "_").upper(), "1.9", venvs) == older
    assert [c.version for c in list_installed(venvs)] == ["1.9.0", "1.10.0"]


def test_incomplete_dirs_are_replaced_and_stale_staging_removed(wheels: Path, tmp_path: Path) -> None:
    build_wheel(wheels, "1.0.0")
    venvs = tmp_path / "venvs"
    half_made = venvs / f"{DEMO}-1.0.0"
    half_made.mkdir(parents=True)
    (half_made / "junk").write_text("no marker here")
    stale, fresh = venvs / f"{STAGING_PREFIX}x-old", venvs / f"{STAGING_PREFIX}y-new"
    stale.mkdir()
    fresh.mkdir()
    hours_ago = time.time() - 7200
    os.utime(stale, (hours_ago, hours_ago))

    demo = ensure_installed(DEMO, "1.0.0", venvs)
    assert demo.venv == half_made
    assert not (half_made / "junk").exists()
    assert (half_made / MARKER).is_file()
    assert not stale.exists()
    assert fresh.exists()  # may belong to an install in progress

    # The launcher hands over its arguments as a console script would, and returns the exit code.
    code, out = run_demo(demo, "check", "--config", "x y.json", cwd=tmp_path)
    assert code == 3
    assert out == {"argv": ["source-ferryman-demo", "check", "--config", "x y.json"], "version": "1.0.0"}


def test_failed_entry_point_leaves_nothing(wheels: Path, tmp_path: Path) -> None:
    build_wheel(wheels, "1.0.0", {"source-ferryman-demo": "demo_connector.missing:run"})
    venvs = tmp_path / "venvs"
    with pytest.raises(ConnectorInstallError, match=r"demo_connector\.missing:run does not load"):
        ensure_installed(DEMO, "1.0.0", venvs)
    assert leftovers(venvs) == []


CONCURRENT = """\
import json, sys
from pathlib import Path
from ferryman.connectors.pypi import ensure_installed
found = ensure_installed(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
print(json.dumps([str(found.venv), found.command]))
"""


def test_concurrent_installs_share_one_venv(wheels: Path, tmp_path: Path) -> None:
    build_wheel(wheels, "2.0.0")
    venvs = tmp_path / "venvs"
    argv = [sys.executable, "-c", CONCURRENT, DEMO, "2.0.0", str(venvs)]
    processes = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    results = [process.communicate(timeout=120) for process in processes]
    assert all(p.returncode == 0 for p in processes), [err for _, err in results]
    first, second = (json.loads(out) for out, _ in results)
    assert first == second
    assert leftovers(venvs) == [f"{DEMO}-2.0.0"]


def test_scripts_in_the_venv_run_by_hand(wheels: Path, tmp_path: Path) -> None:
    build_wheel(wheels, "1.0.0")
    demo = ensure_installed(DEMO, "1.0.0", tmp_path / "venvs")
    # Their shebangs named the staging directory, gone after the rename: "No such file".
    pip = subprocess.run([demo.venv / "bin" / "pip", "--version"], capture_output=True, text=True, timeout=60)
    assert pip.returncode == 0, pip.stderr
    assert str(demo.venv) in pip.stdout
    script = subprocess.run(
        [demo.venv / "bin" / "source-ferryman-demo", "check"], capture_output=True, text=True, timeout=60
    )
    assert script.returncode == 3, script.stderr
    assert json.loads(script.stdout)["version"] == "1.0.0"
    activate = (demo.venv / "bin" / "activate").read_text()
    assert STAGING_PREFIX not in activate and str(demo.venv) in activate


def test_a_console_script_named_airbyte_source_is_a_connector(wheels: Path, tmp_path: Path) -> None:
    build_wheel(wheels, "1.0.0", {"airbyte-source-ferryman-demo": "demo_connector.run:run"})
    demo = ensure_installed(DEMO, "1.0.0", tmp_path / "venvs")
    assert json.loads((demo.venv / MARKER).read_text())["script"] == "airbyte-source-ferryman-demo"
    code, out = run_demo(demo, "check", cwd=tmp_path)
    assert (code, out["argv"][0]) == (3, "airbyte-source-ferryman-demo")


# Only setuptools (bundled with ensurepip) to build: pip runs setup.py before it wants "wheel".
BUILD_SYSTEM = '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'


def build_failing_sdist(directory: Path, version: str) -> None:
    """An sdist of ``DEMO`` whose setup.py raises, with the setuptools wheel pip needs to run it."""
    setup = "raise RuntimeError('ferryman-test: this setup.py refuses to build')\n"
    info = f"Metadata-Version: 2.1\nName: {DEMO}\nVersion: {version}\n"
    root = f"airbyte_source_ferryman_demo-{version}"
    with tarfile.open(directory / f"{root}.tar.gz", "w:gz") as archive:
        for name, text in (("setup.py", setup), ("PKG-INFO", info), ("pyproject.toml", BUILD_SYSTEM)):
            data = text.encode()
            member = tarfile.TarInfo(f"{root}/{name}")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    for wheel in (Path(ensurepip.__file__).parent / "_bundled").glob("setuptools-*.whl"):
        shutil.copy(wheel, directory)


def test_a_failing_build_is_reported_in_pips_words(wheels: Path, tmp_path: Path) -> None:
    build_failing_sdist(wheels, "1.0.0")
    venvs = tmp_path / "venvs"
    with pytest.raises(ConnectorInstallError) as caught:
        ensure_installed(DEMO, "1.0.0", venvs)
    message = str(caught.value)
    assert message.startswith(f"pip could not install {DEMO}==1.0.0 (exit code 1); it said:")
    assert "RuntimeError: ferryman-test: this setup.py refuses to build" in message
    log = venvs / f"{DEMO}-install.log"
    assert message.endswith(f"pip's full output: {log}")
    assert "this setup.py refuses to build" in log.read_text()
    assert leftovers(venvs) == []


def ferryman(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FERRYMAN_HOME": str(home)}
    env.pop("FERRYMAN_DATABASE_URL", None)
    argv = [sys.executable, "-m", "ferryman", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


def test_an_install_shows_its_steps_and_an_unversioned_source_is_pinned(wheels: Path, tmp_path: Path) -> None:
    build_wheel(wheels, "1.9.0")
    build_wheel(wheels, "1.10.0")
    home = tmp_path / "home"
    created = ferryman(home, "sources", "create", "demo", "--connector", f"pypi:{DEMO}", "--config", "{}")
    assert created.returncode == 0, created.stderr
    # Not a terminal: one line per step, the last with the version and the time it took.
    steps = [line for line in created.stderr.splitlines() if line.startswith(f"pypi:{DEMO}: ")]
    assert [line.split(": ", 1)[1].split()[0] for line in steps] == [
        "creating",
        "pip",
        "checking",
        "installed",
    ]
    assert steps[-1].startswith(f"pypi:{DEMO}: installed 1.10.0 in ")
    assert f"pypi:{DEMO} pinned to the version installed now: pypi:{DEMO}==1.10.0" in created.stderr

    shown = ferryman(home, "sources", "show", "demo", "--json")
    assert json.loads(shown.stdout)["connector"] == f"pypi:{DEMO}==1.10.0"
    build_wheel(wheels, "1.11.0")  # a newer release does not move a configured source
    assert f"pypi:{DEMO}==1.10.0" in ferryman(home, "sources", "show", "demo").stdout


def build_blocking_sdist(directory: Path, version: str, building: Path, release: Path) -> None:
    """An sdist of ``DEMO`` whose setup.py writes its pid to ``building`` and then waits for
    ``release``: pip is caught mid-install, with a build process of its own running."""
    setup = (
        "import os, time\n"
        f"open({str(building)!r}, 'w').write(str(os.getpid()))\n"
        f"while not os.path.exists({str(release)!r}):\n"
        "    time.sleep(0.05)\n"
        "raise SystemExit('released')\n"
    )
    info = f"Metadata-Version: 2.1\nName: {DEMO}\nVersion: {version}\n"
    root = f"airbyte_source_ferryman_demo-{version}"
    with tarfile.open(directory / f"{root}.tar.gz", "w:gz") as archive:
        for name, text in (("setup.py", setup), ("PKG-INFO", info), ("pyproject.toml", BUILD_SYSTEM)):
            data = text.encode()
            member = tarfile.TarInfo(f"{root}/{name}")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    for wheel in (Path(ensurepip.__file__).parent / "_bundled").glob("setuptools-*.whl"):
        shutil.copy(wheel, directory)


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_an_install_interrupted_mid_pip_leaves_no_pip_and_the_next_one_installs(
    how: str, wheels: Path, tmp_path: Path
) -> None:
    building, release = tmp_path / "building", tmp_path / "release"
    build_blocking_sdist(wheels, "1.0.0", building, release)
    home = tmp_path / "home"
    env = {**os.environ, "FERRYMAN_HOME": str(home)}
    env.pop("FERRYMAN_DATABASE_URL", None)
    create = ["sources", "create", "demo", "--connector", f"pypi:{DEMO}", "--config", "{}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "ferryman", *create],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives a command
    )
    deadline = time.monotonic() + 120
    while not building.exists():  # the file, not a pause: pip is in the package's build
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    build_pid = int(building.read_text())
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.kill()
    _, stderr = process.communicate(timeout=60)

    if how == "ctrl-c":
        assert process.returncode == 130 and stderr.endswith("error: interrupted\n"), stderr
    deadline = time.monotonic() + 30
    while not process_gone(build_pid):  # the guard kills pip's group once the pipe ends
        assert time.monotonic() < deadline, "the package's build outlived the killed command"
        time.sleep(0.05)
    venvs = home / "venvs"
    assert list_installed(venvs) == []  # nothing half-made is taken for an install
    assert json.loads(ferryman(home, "sources", "list", "--json").stdout)["sources"] == []

    (wheels / "airbyte_source_ferryman_demo-1.0.0.tar.gz").unlink()
    build_wheel(wheels, "1.0.0")
    again = ferryman(home, *create)
    assert again.returncode == 0, again.stderr
    (installed,) = list_installed(venvs)
    assert installed.version == "1.0.0" and (installed.venv / MARKER).is_file()
    assert [p.name for p in staging_dirs(venvs) if how == "ctrl-c"] == []


def test_ctrl_c_during_an_install_inside_a_job_stops_pip_and_cancels_the_job(
    wheels: Path, tmp_path: Path
) -> None:
    """A source whose venv is gone is installed again by the job that needs it (here the discover
    of `connections create`), on the engine's thread: the Ctrl-C that cancels the job must stop
    pip too (it ran on, and the command with it, until pip was done)."""
    home = tmp_path / "home"
    build_wheel(wheels, "1.0.0")
    created = ferryman(
        home, "sources", "create", "demo", "--connector", f"pypi:{DEMO}==1.0.0", "--config", "{}"
    )
    assert created.returncode == 0, created.stderr
    for installed in list_installed(home / "venvs"):  # the venv is lost (a new machine, a clean-up)
        shutil.rmtree(installed.venv)
    (wheels / "airbyte_source_ferryman_demo-1.0.0-py3-none-any.whl").unlink()
    building, release = tmp_path / "building", tmp_path / "release"
    build_blocking_sdist(wheels, "1.0.0", building, release)
    env = {**os.environ, "FERRYMAN_HOME": str(home)}
    env.pop("FERRYMAN_DATABASE_URL", None)
    create = ["connections", "create", "c", "--source", "demo", "--destination", "sink"]
    assert (
        ferryman(
            home, "destinations", "create", "sink", "--connector", "builtin:destination-devnull"
        ).returncode
        == 0
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "ferryman", *create],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives a command
    )
    deadline = time.monotonic() + 120
    while not building.exists():  # the file, not a pause: pip is in the package's build
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    build_pid = int(building.read_text())
    os.killpg(process.pid, signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=60)  # the build waits for `release`: for ever
    finally:
        release.touch()
    assert process.returncode != 0 and "Traceback" not in stderr, stderr
    assert "cancel" in stderr, stderr
    assert process_gone(build_pid)
    assert list_installed(home / "venvs") == []


def test_a_definition_is_installed_and_asked_for_its_spec_when_it_is_added(
    wheels: Path, tmp_path: Path
) -> None:
    """As in Airbyte, adding a definition fetches its spec: a package that does not install is
    refused in one line and not added (before, it was listed, and every source made from it
    failed later); one that does is ready, so an API client's first create answers at once."""
    home = tmp_path / "home"
    missing = ferryman(home, "definitions", "add", "demo", f"pypi:{DEMO}==1.0.0")
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()[-1]) < 400
    assert "demo" not in ferryman(home, "definitions", "list").stdout
    build_wheel(wheels, "1.0.0")
    added = ferryman(home, "definitions", "add", "demo", f"pypi:{DEMO}==1.0.0")
    assert added.returncode == 0, added.stderr
    (installed,) = list_installed(home / "venvs")
    assert installed.version == "1.0.0"
    assert "demo" in ferryman(home, "definitions", "list").stdout
