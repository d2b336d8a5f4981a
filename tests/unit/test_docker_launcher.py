"""The docker run command line, image references and container names (no engine needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferryman.connectors import ConnectorRef, ResolvedConnector, parse_reference
from ferryman.connectors.docker import engine_reason, parse_image, unreachable
from ferryman.errors import ConnectorReferenceError, UserInputError
from ferryman.launchers import docker as docker_launcher
from ferryman.launchers.base import LaunchRequest
from ferryman.launchers.docker import DockerLauncher, DockerSettings, ResourceLimits, container_name

IMAGE = "airbyte/source-faker:6.2.21"


@pytest.mark.parametrize(
    ("text", "repository", "tag"),
    [
        ("airbyte/source-faker:6.2.21", "airbyte/source-faker", "6.2.21"),
        ("airbyte/source-faker", "airbyte/source-faker", "latest"),
        ("localhost:5000/team/source-x", "localhost:5000/team/source-x", "latest"),
        ("localhost:5000/team/source-x:1.0", "localhost:5000/team/source-x", "1.0"),
        ("ghcr.io/org/dest_duck:dev-1", "ghcr.io/org/dest_duck", "dev-1"),
    ],
)
def test_image_references_name_repository_and_tag(text: str, repository: str, tag: str) -> None:
    image = parse_image(text)

    assert (image.repository, image.tag) == (repository, tag)
    assert parse_reference(f"docker:{text}") == ConnectorRef("docker", f"{repository}:{tag}")


@pytest.mark.parametrize("text", ["docker:", "docker:Airbyte/Source", "docker:a b", "docker:x:y:z"])
def test_a_bad_image_reference_is_one_line_naming_it(text: str) -> None:
    with pytest.raises(ConnectorReferenceError) as error:
        parse_reference(text)

    assert "\n" not in str(error.value)
    assert "docker:" in str(error.value)


def test_container_names_say_what_runs_and_fit_docker() -> None:
    name = container_name(IMAGE, "sync", "42", 1, "source")
    long = container_name("x/" + "n" * 200, "sync", "42", 1, "destination")
    odd = container_name("9lives:1", "check_connection_source", "7", 0, "check")

    assert name.startswith("source-faker-sync-42-1-source-") and len(name.split("-")[-1]) == 5
    assert len(long) == 128 and long.endswith(long[-5:]) and long[0].isalpha()
    assert odd[0].isalpha()


@pytest.fixture
def settings(tmp_path: Path) -> DockerSettings:
    return DockerSettings(
        network="host",
        local_root=tmp_path / "local",
        user="1000:1000",
        limits=ResourceLimits("2g", "1g", "1.5"),
        check_limits=ResourceLimits("512m", None, "0.5"),
        labels={"io.ferryman.store": "abc"},
    )


def request_for(tmp_path: Path, job_type: str = "sync", **connector: object) -> LaunchRequest:
    workdir = tmp_path / "workspace" / "42" / "1"
    resolved = ResolvedConnector(
        ConnectorRef("docker", IMAGE), [], env={"API_TOKEN": "s3cret-value"}, image=IMAGE, **connector
    )  # type: ignore[arg-type]
    return LaunchRequest(
        resolved,
        ["read", "--config", str(workdir / "source_config.json"), "--catalog", str(workdir / "c.json")],
        workdir,
        "source",
        env={"TZ": "UTC"},
        job_id="42",
        attempt=1,
        job_type=job_type,
    )


def limit_args(argv: list[str]) -> list[str]:
    return [arg for arg in argv if arg.startswith(("--cpus=", "--memory"))]


def test_the_run_command_is_airbytes_with_labels_mounts_and_limits(
    settings: DockerSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docker_launcher, "docker_command", lambda: "docker")
    request = request_for(tmp_path)
    request.workdir.mkdir(parents=True)
    for name in ("source_config.json", "c.json", "destination_config.json", "logs.log"):
        (request.workdir / name).write_text("{}")

    argv, _ = DockerLauncher(settings).command(request, IMAGE, "the-name")

    assert argv[:9] == ["docker", "run", "--rm", "--init", "-i", "-w", "/data/42/1", "--log-driver", "none"]
    assert argv[argv.index("--name") + 1] == "the-name"
    labels = {argv[i + 1] for i, arg in enumerate(argv) if arg == "--label"}
    assert {"io.ferryman.managed=true", "io.ferryman.job-id=42", "io.ferryman.attempt=1"} <= labels
    assert {"io.ferryman.role=source", "io.ferryman.job-type=sync", "io.ferryman.store=abc"} <= labels
    volumes = {argv[i + 1] for i, arg in enumerate(argv) if arg == "-v"}
    # Only the files it is given (not the destination's config, nor the log), in a directory of its own.
    assert volumes == {
        f"{request.workdir}/.container-the-name:/data/42/1",
        f"{request.workdir}/source_config.json:/data/42/1/source_config.json",
        f"{request.workdir}/c.json:/data/42/1/c.json",
        f"{tmp_path / 'local'}:/local",
    }
    assert argv[argv.index("--network") + 1] == "host"
    assert argv[argv.index("--user") + 1] == "1000:1000"
    assert limit_args(argv) == ["--cpus=1.5", "--memory-reservation=1g", "--memory=2g"]
    # The image's entrypoint runs, with the attempt's files named as the container sees them.
    tail = argv[argv.index(IMAGE) :]
    assert tail == [
        IMAGE,
        "read",
        "--config",
        "/data/42/1/source_config.json",
        "--catalog",
        "/data/42/1/c.json",
    ]
    assert "--entrypoint" not in argv


def test_variables_reach_the_container_by_name_so_secrets_never_show_in_a_process_list(
    settings: DockerSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docker_launcher, "docker_command", lambda: "docker")

    argv, env = DockerLauncher(settings).command(request_for(tmp_path), IMAGE, "n")

    names = {argv[i + 1] for i, arg in enumerate(argv) if arg == "-e"}
    assert names == {"API_TOKEN", "TZ", "WORKER_CONNECTOR_IMAGE", "WORKER_JOB_ID", "WORKER_JOB_ATTEMPT"}
    assert env["API_TOKEN"] == "s3cret-value"
    assert (env["WORKER_CONNECTOR_IMAGE"], env["WORKER_JOB_ID"], env["WORKER_JOB_ATTEMPT"]) == (
        IMAGE,
        "42",
        "1",
    )
    assert not any("s3cret" in arg for arg in argv)


def test_check_jobs_and_connectors_have_limits_of_their_own(
    settings: DockerSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docker_launcher, "docker_command", lambda: "docker")
    launcher = DockerLauncher(settings)

    check, _ = launcher.command(request_for(tmp_path, "check_connection_source"), IMAGE, "n")
    own, _ = launcher.command(request_for(tmp_path, limits={"memory_limit": "4g"}), IMAGE, "n")

    assert limit_args(check) == ["--cpus=0.5", "--memory=512m"]
    assert "--memory=4g" in own and "--cpus=1.5" in own


@pytest.mark.parametrize(
    ("raw", "docker"), [("2Gi", "2g"), ("512Mi", "512m"), ("1g", "1g"), ("300m", "300m")]
)
def test_memory_sizes_are_taken_as_docker_or_kubernetes_write_them(raw: str, docker: str) -> None:
    limits = ResourceLimits.from_env("JOB_MAIN_CONTAINER", {"JOB_MAIN_CONTAINER_MEMORY_LIMIT": raw})

    assert limits.memory_limit == docker


@pytest.mark.parametrize(
    ("name", "raw"), [("JOB_MAIN_CONTAINER_MEMORY_LIMIT", "lots"), ("JOB_MAIN_CONTAINER_CPU_LIMIT", "-1")]
)
def test_a_bad_limit_is_one_line_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(UserInputError, match=name):
        ResourceLimits.from_env("JOB_MAIN_CONTAINER", {name: raw})


def test_engine_messages_are_read_for_their_reason() -> None:
    down = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
    pull = "Error response from daemon: pull access denied for nope/nope, repository does not exist"

    assert unreachable(down)
    assert not unreachable(pull)
    assert engine_reason(pull) == "pull access denied for nope/nope, repository does not exist"


@pytest.mark.parametrize(
    ("name", "raw", "says"),
    [
        ("JOB_MAIN_CONTAINER_CPU_LIMIT", "nan", "positive number"),
        ("JOB_MAIN_CONTAINER_CPU_LIMIT", "inf", "positive number"),
        ("JOB_MAIN_CONTAINER_CPU_LIMIT", "0.001", "at least 0.01"),
        ("JOB_MAIN_CONTAINER_MEMORY_LIMIT", "0.5", "at least 6m"),
        ("JOB_MAIN_CONTAINER_MEMORY_LIMIT", "2", "at least 6m"),
        ("JOB_MAIN_CONTAINER_MEMORY_REQUEST", "1k", "at least 6m"),
        ("JOB_MAIN_CONTAINER_MEMORY_LIMIT", "-1", "memory size"),
    ],
)
def test_a_limit_docker_would_refuse_is_refused_before_any_container_starts(
    name: str, raw: str, says: str
) -> None:
    """Before, nan / inf CPUs and memory under Docker's 6 MB minimum (a bare "2" is 2 bytes)
    passed, and every job of the connector failed when Docker refused the container; half a
    byte ("0.5") even ran with no limit at all."""
    with pytest.raises(UserInputError, match=f"{name} must be .*{says}"):
        ResourceLimits.from_env("JOB_MAIN_CONTAINER", {name: raw})


@pytest.mark.parametrize(("raw", "docker"), [("1g", "1g"), ("6m", "6m"), ("1.5Gi", "1.5g"), (" 2 g ", "2g")])
def test_memory_sizes_at_or_above_the_minimum_are_kept(raw: str, docker: str) -> None:
    limits = ResourceLimits.from_env("JOB_MAIN_CONTAINER", {"JOB_MAIN_CONTAINER_MEMORY_LIMIT": raw})

    assert limits.memory_limit == docker
