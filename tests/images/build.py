"""Build the Docker images the Docker tests use, without any registry.

    python tests/images/build.py [NAME ...]     build what is missing, one line per image
    python tests/images/build.py --ref NAME     print an image's reference, build nothing

Nothing is pulled: the base image is a Debian rootfs made with ``debootstrap`` and imported with
``docker import``; Python packages are downloaded as wheels on the host (PyPI) and installed in
``docker build --network none`` with ``pip install --no-index``. Images are found by reference plus
the recipe label, so a second run builds nothing. Standard library only, self-contained: import it
as ``tests.images.build`` or, with ``tests`` on ``sys.path``, as ``images.build``.

    IMAGES          public name -> full reference (``ferryman-test/<name>:<tag>``)
    image(name)     the reference of one image (builds nothing)
    ensure(*names)  build what is missing (all public images when no name is given)

Tags: ``python-base`` has a fixed tag (bump ``BASE_TAG`` when its recipe changes), ``source-faker``
the connector's version, the built-in connectors a hash of ``src/ferryman/**/*.py`` and
``pyproject.toml``, the scripted connectors a hash of their script.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = "ferryman-test"
LABEL = "io.ferryman.test-image"
RECIPE_LABEL = "io.ferryman.test-recipe"
LOCK_FILE = Path(tempfile.gettempdir()) / "ferryman-test-images.lock"
LOG_FILE = Path(tempfile.gettempdir()) / "ferryman-test-images.log"

# The base image: Debian bookworm's own python3. Bump BASE_TAG whenever this recipe changes.
BASE_TAG = "bookworm-1"
BASE_SUITE = "bookworm"
BASE_PYTHON = "3.11"  # bookworm's python3; checked against the rootfs when the base is built
BASE_PACKAGES = ("python3", "python3-venv")
BASE_PRUNE = (
    "var/lib/apt/lists/*",
    "var/cache/apt/*",
    "var/cache/debconf/*-old",
    "var/log/*",
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
    "tmp/*",
)
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Wheel platforms a bookworm image (glibc 2.36, x86_64) can load, for `pip download --platform`.
WHEEL_PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)

FAKER_VERSION = "7.2.1"
BUILTINS = ("source-bench", "source-empty", "destination-duckdb", "destination-jsonl", "destination-devnull")
BUILTIN_DEPENDENCIES = ("msgspec", "orjson", "duckdb")  # what the built-ins import; pins from pyproject
SCRIPTED = {
    "scripted-source": "scripted_source.py",
    "scripted-destination": "scripted_destination.py",
}


class BuildError(Exception):
    """A build step failed: the message is one line for the user."""


@dataclass(frozen=True)
class Spec:
    name: str
    ref: str
    kind: str  # "base" | "faker" | "deps" | "ferryman" | "builtin" | "scripted"
    parent: str | None  # name of the image it is built FROM
    dockerfile: str  # empty for the base image
    recipe: str  # hash of everything the image is made from; stored in RECIPE_LABEL


# --- references ----------------------------------------------------------------------------------


def _sha(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def _ferryman_sources() -> list[Path]:
    return sorted(ROOT.glob("src/ferryman/**/*.py"))


def _code_hash() -> str:
    parts: list[str | bytes] = []
    for path in [*_ferryman_sources(), ROOT / "pyproject.toml"]:
        parts += [path.relative_to(ROOT).as_posix(), path.read_bytes()]
    return _sha(*parts)


def _dependency_pins() -> list[str]:
    """The pyproject requirements of the packages the built-ins import, e.g. ``duckdb==2.0.0``."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        requirements: list[str] = tomllib.load(f)["project"]["dependencies"]
    by_name: dict[str, str] = {}
    for requirement in requirements:
        match = re.match(r"[A-Za-z0-9._-]+", requirement)
        if match:
            by_name[re.sub(r"[-_.]+", "-", match.group(0)).lower()] = requirement.strip()
    missing = [name for name in BUILTIN_DEPENDENCIES if name not in by_name]
    if missing:
        raise BuildError(f"pyproject.toml has no dependency {', '.join(missing)}")
    return [by_name[name] for name in BUILTIN_DEPENDENCIES]


def _specs() -> dict[str, Spec]:
    specs: dict[str, Spec] = {}

    def add(name: str, tag: str, kind: str, parent: str | None, dockerfile: str, *inputs: str) -> None:
        repository = "python-base" if name == "base" else name
        ref = f"{REPOSITORY}/{repository}:{tag}"
        parent_ref, parent_recipe = (specs[parent].ref, specs[parent].recipe) if parent else ("", "")
        dockerfile = dockerfile.replace("{parent}", parent_ref)
        recipe = _sha(ref, dockerfile, parent_recipe, *inputs)
        specs[name] = Spec(name, ref, kind, parent, dockerfile, recipe)

    add("base", BASE_TAG, "base", None, "", BASE_SUITE, *BASE_PACKAGES, *BASE_PRUNE)
    add(
        "source-faker",
        FAKER_VERSION,
        "faker",
        "base",
        "FROM {parent} AS install\n"
        "COPY wheels /wheels\n"
        "RUN python3 -m venv /opt/connector \\\n"
        " && /opt/connector/bin/pip install --no-index --find-links /wheels --no-cache-dir \\\n"
        f"    --disable-pip-version-check --quiet airbyte-source-faker=={FAKER_VERSION}\n"
        "FROM {parent}\n"
        "COPY --from=install /opt/connector /opt/connector\n"
        'ENTRYPOINT ["/opt/connector/bin/source-faker"]\n',
    )
    pins = _dependency_pins()
    add(
        "ferryman-deps",
        _sha(*pins),
        "deps",
        "base",
        "FROM {parent} AS install\n"
        "COPY wheels /wheels\n"
        "RUN python3 -m venv /opt/ferryman \\\n"
        " && /opt/ferryman/bin/pip install --no-index --find-links /wheels --no-cache-dir \\\n"
        f"    --disable-pip-version-check --quiet {' '.join(pins)}\n"
        "FROM {parent}\n"
        "COPY --from=install /opt/ferryman /opt/ferryman\n",
        *pins,
    )
    code = _code_hash()
    add(
        "ferryman",
        code,
        "ferryman",
        "ferryman-deps",
        "FROM {parent}\n"
        "COPY wheels /wheels\n"
        "RUN /opt/ferryman/bin/pip install --no-index --no-deps --no-cache-dir \\\n"
        "    --disable-pip-version-check --quiet /wheels/*.whl && rm -rf /wheels\n",
        code,
    )
    for name in BUILTINS:
        module = "ferryman.builtin." + name.replace("-", "_")
        entrypoint = json.dumps(["/opt/ferryman/bin/python", "-m", module])
        add(name, code, "builtin", "ferryman", f"FROM {{parent}}\nENTRYPOINT {entrypoint}\n")
    for name, script in SCRIPTED.items():
        content = (ROOT / "tests" / "connectors" / script).read_bytes()
        entrypoint = json.dumps(["python3", f"/connector/{script}"])
        dockerfile = f"FROM {{parent}}\nCOPY {script} /connector/{script}\nENTRYPOINT {entrypoint}\n"
        add(name, _sha(content), "scripted", "base", dockerfile, content.decode())
    return specs


_SPECS = _specs()
PUBLIC = ("base", "source-faker", *BUILTINS, *SCRIPTED)
IMAGES: dict[str, str] = {name: _SPECS[name].ref for name in PUBLIC}


def image(name: str) -> str:
    """The full reference of a test image, e.g. ``ferryman-test/source-faker:7.2.1``."""
    try:
        return IMAGES[name]
    except KeyError:
        raise KeyError(f"no test image {name!r}; known: {', '.join(IMAGES)}") from None


# --- running commands ----------------------------------------------------------------------------


def _run(
    cmd: Sequence[str],
    *,
    stdin: int | None = None,
    input: bytes | None = None,
    what: str | None = None,
) -> str:
    """Run a command, return its stdout; on failure raise BuildError naming it (full output logged)."""
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    try:
        done = subprocess.run(
            list(cmd), stdin=stdin, input=input, capture_output=True, env=env, check=False, cwd=ROOT
        )
    except FileNotFoundError:
        hint = ": run .ci/docker-up" if cmd[0] == "docker" else ""
        raise BuildError(f"{cmd[0]} is not installed{hint}") from None
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")
        with LOG_FILE.open("a") as log:
            log.write(f"$ {' '.join(cmd)}\n{output}\n")
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        last = lines[-1] if lines else "no output"
        raise BuildError(
            f"{what or ' '.join(cmd[:2])} failed (exit {done.returncode}): {last} [full output: {LOG_FILE}]"
        )
    return done.stdout.decode(errors="replace")


def _engine_answers() -> None:
    try:
        done = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True)
    except FileNotFoundError:
        raise BuildError("docker is not installed: run .ci/docker-up") from None
    if done.returncode != 0:
        raise BuildError("no Docker engine answers: run .ci/docker-up")


def _present(specs: Sequence[Spec]) -> set[str]:
    """Names of the images that exist with their expected recipe (one `docker image inspect`)."""
    if not specs:
        return set()
    cmd = ["docker", "image", "inspect", "--format", "{{json .RepoTags}}\t{{json .Config.Labels}}"]
    done = subprocess.run([*cmd, *(spec.ref for spec in specs)], capture_output=True, text=True)
    recipes: dict[str, str] = {}
    for line in done.stdout.splitlines():
        tags, tab, labels = line.partition("\t")
        if not tab:  # some clients print an empty line for a missing image
            continue
        recipe = (json.loads(labels) or {}).get(RECIPE_LABEL, "")
        for tag in json.loads(tags) or []:
            recipes[tag] = recipe
    return {spec.name for spec in specs if recipes.get(spec.ref) == spec.recipe}


# --- host-side preparation -----------------------------------------------------------------------


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args]


def _download_wheels(requirements: Sequence[str], dest: Path) -> None:
    """Wheels for the image's Python, downloaded on the host; sdist-only packages built on the host."""
    platforms = [arg for platform in WHEEL_PLATFORMS for arg in ("--platform", platform)]
    python = BASE_PYTHON.replace(".", "")
    try:
        _run(
            _pip(
                "download", "--only-binary=:all:", "--dest", str(dest), "--python-version", BASE_PYTHON,
                "--implementation", "cp", "--abi", f"cp{python}", "--abi", "abi3", "--abi", "none",
                *platforms, *requirements,
            ),
            what=f"pip download {' '.join(requirements)}",
        )  # fmt: skip
    except BuildError:
        if f"{sys.version_info.major}.{sys.version_info.minor}" != BASE_PYTHON:
            raise
        # Some package has no wheel: the host's Python matches the image's, so build it here.
        _run(
            _pip("wheel", "--wheel-dir", str(dest), *requirements), what=f"pip wheel {' '.join(requirements)}"
        )


def _ferryman_wheel(dest: Path, work: Path) -> None:
    """A wheel of this checkout (no dependencies), built from a copy so the tree stays untouched."""
    project = work / "project"
    shutil.copytree(
        ROOT / "src" / "ferryman",
        project / "src" / "ferryman",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, project / name)
    _run(_pip("wheel", "--no-deps", "--wheel-dir", str(dest), str(project)), what="pip wheel ferryman")


def _prepare(spec: Spec, context: Path) -> None:
    """Fill a build context (the Dockerfile is passed separately)."""
    context.mkdir(parents=True)
    if spec.kind == "faker":
        _download_wheels([f"airbyte-source-faker=={FAKER_VERSION}"], context / "wheels")
    elif spec.kind == "deps":
        _download_wheels(_dependency_pins(), context / "wheels")
    elif spec.kind == "ferryman":
        _ferryman_wheel(context / "wheels", context.parent / f"{spec.name}-work")
    elif spec.kind == "scripted":
        script = SCRIPTED[spec.name]
        shutil.copy2(ROOT / "tests" / "connectors" / script, context / script)


# --- the base image ------------------------------------------------------------------------------


def _mirror() -> str:
    """The host's Debian mirror for bookworm (from apt's sources), else deb.debian.org."""
    sources = Path("/etc/apt/sources.list")
    one_line = [sources] if sources.is_file() else []
    one_line += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    for path in one_line:
        for line in path.read_text(errors="replace").splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == BASE_SUITE:
                return words[1]
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                key, sep, value = line.partition(":")
                if sep and not line.startswith(("#", " ", "\t")):
                    fields[key.strip().lower()] = value.strip()
            if (
                "deb" in fields.get("types", "").split()
                and BASE_SUITE in fields.get("suites", "").split()
                and fields.get("enabled", "yes").lower() != "no"
                and fields.get("uris")
            ):
                return fields["uris"].split()[0]
    return DEFAULT_MIRROR


def _ensure_debootstrap() -> None:
    if shutil.which("debootstrap"):
        return
    if os.geteuid() != 0:
        raise BuildError("debootstrap is not installed (apt-get install debootstrap, as root)")
    env_cmd = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-o", "DPkg::Lock::Timeout=300"]
    try:
        _run([*env_cmd, "install", "-y", "-q", "debootstrap"], what="apt-get install debootstrap")
    except BuildError:
        _run([*env_cmd, "update", "-q"], what="apt-get update")
        _run([*env_cmd, "install", "-y", "-q", "debootstrap"], what="apt-get install debootstrap")


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root).rstrip("/") + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1].replace("\\040", " ") for line in mounts]
    return sorted((point for point in points if point.startswith(prefix)), key=len, reverse=True)


def _remove_rootfs(root: Path) -> None:
    """Delete a debootstrap target, never through a mount (a failed run may leave /proc or /dev)."""
    if not root.exists():
        return
    for point in _mounts_under(root):
        subprocess.run(["umount", "-l", point], capture_output=True)
    if _mounts_under(root):
        raise BuildError(f"{root} still has mounts under it; not deleting it")
    shutil.rmtree(root)


def _build_base(spec: Spec, work: Path) -> None:
    if os.geteuid() != 0:
        raise BuildError("building the base image needs root (debootstrap)")
    _ensure_debootstrap()
    root = work / "rootfs"
    try:
        include = ",".join(BASE_PACKAGES)
        _run(
            ["debootstrap", "--variant=minbase", f"--include={include}", BASE_SUITE, str(root), _mirror()],
            what="debootstrap",
        )
        python = (root / "usr" / "bin" / "python3").readlink().name
        if python != f"python{BASE_PYTHON}":
            raise BuildError(
                f"the {BASE_SUITE} rootfs has {python}, not python{BASE_PYTHON}: fix BASE_PYTHON"
            )
        for pattern in BASE_PRUNE:
            for path in root.glob(pattern):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        changes = [
            f"LABEL {LABEL}=1 {RECIPE_LABEL}={spec.recipe}",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            'CMD ["python3"]',
        ]
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        try:
            cmd = ["docker", "import", *(arg for change in changes for arg in ("--change", change))]
            _run([*cmd, "-", spec.ref], stdin=tar.stdout.fileno(), what="docker import")
        finally:
            tar.stdout.close()
            if tar.wait() != 0:
                raise BuildError(f"tar of {root} failed (exit {tar.returncode})")
    finally:
        _remove_rootfs(root)


# --- building ------------------------------------------------------------------------------------


def _docker_build(spec: Spec, context: Path | None) -> None:
    cmd = ["docker", "build", "--network", "none", "--label", f"{LABEL}=1"]
    cmd += ["--label", f"{RECIPE_LABEL}={spec.recipe}", "--tag", spec.ref]
    if context is None:  # FROM + ENTRYPOINT only: no context at all
        _run([*cmd, "-"], input=spec.dockerfile.encode(), what=f"docker build {spec.ref}")
    else:
        (context / "Dockerfile").write_text(spec.dockerfile)
        _run([*cmd, str(context)], what=f"docker build {spec.ref}")


def _remove_old_tags(spec: Spec) -> None:
    """Untag other tags of this repository (best effort: an image in use stays)."""
    repository = spec.ref.rsplit(":", 1)[0]
    listed = subprocess.run(
        ["docker", "image", "ls", "--filter", f"label={LABEL}=1", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
    )
    old = [ref for ref in listed.stdout.split() if ref.rsplit(":", 1)[0] == repository and ref != spec.ref]
    if old:
        subprocess.run(["docker", "rmi", *old], capture_output=True)


def _needed(names: Sequence[str]) -> tuple[list[Spec], set[str]]:
    """The images to look at (the targets, plus the ancestors of those that must be built), in build
    order, and which of them are present."""
    present = _present([_SPECS[name] for name in names])
    wanted = set(names)
    pending = [name for name in names if name not in present]
    while pending:
        parent = _SPECS[pending.pop()].parent
        if parent and parent not in wanted:
            wanted.add(parent)
            present |= _present([_SPECS[parent]])
            if parent not in present:
                pending.append(parent)
    return [spec for name, spec in _SPECS.items() if name in wanted], present  # parents come first


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One build at a time on this machine (parallel test sessions wait, then find the images)."""
    with LOCK_FILE.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure(*names: str, report: bool = False) -> dict[str, str]:
    """Build the missing images among ``names`` (default: all public ones); return name -> reference."""
    targets = list(names or PUBLIC)
    for name in targets:
        if name not in _SPECS:
            raise BuildError(f"no test image {name!r}; known: {', '.join(IMAGES)}")
    _engine_answers()
    with _locked():
        specs, present = _needed(targets)
        missing = [spec for spec in specs if spec.name not in present]
        if report:
            for spec in specs:
                if spec.name in present:
                    print(f"found  {spec.ref}", flush=True)
        if missing:
            _build(missing, report)
    return {name: _SPECS[name].ref for name in targets}


def _build(missing: Sequence[Spec], report: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="ferryman-images-"))
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            # Host-side downloads run while debootstrap does; the images are then built in order.
            prepared: dict[str, Future[None]] = {
                spec.name: pool.submit(_prepare, spec, work / spec.name)
                for spec in missing
                if spec.kind not in ("base", "builtin")
            }
            try:
                for spec in missing:
                    started = time.monotonic()
                    if spec.kind == "base":
                        _build_base(spec, work)
                    elif spec.kind == "builtin":
                        _docker_build(spec, None)
                    else:
                        prepared[spec.name].result()
                        _docker_build(spec, work / spec.name)
                    _remove_old_tags(spec)
                    if report:
                        print(f"built  {spec.ref}  ({time.monotonic() - started:.1f} s)", flush=True)
            finally:
                for future in prepared.values():
                    future.cancel()
        # Dangling leftovers of our builds (install stages, images replaced under the same tag).
        subprocess.run(
            ["docker", "image", "prune", "--force", "--filter", f"label={LABEL}=1"], capture_output=True
        )
    finally:
        _remove_rootfs(work / "rootfs")
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the Docker images of the Docker tests.")
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"images to build (default: all): {', '.join(IMAGES)}"
    )
    parser.add_argument("--ref", metavar="NAME", help="print the reference of an image, build nothing")
    args = parser.parse_args(argv)
    try:
        if args.ref:
            print(image(args.ref))
            return 0
        started = time.monotonic()
        ensure(*args.names, report=True)
    except (BuildError, KeyError) as error:
        print(f"images: {error.args[0] if error.args else error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("images: interrupted", file=sys.stderr)
        return 1
    print(f"images: ready in {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
