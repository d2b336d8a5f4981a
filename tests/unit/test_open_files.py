"""The limit of open files: raised at start-up, and named (never a full disk) when reached."""

from __future__ import annotations

import errno
import resource
import subprocess
import sys

from ferryman.engines.execution import _os_error
from ferryman.open_files import CAP, describe


def test_a_builtin_connector_raises_its_soft_limit_to_the_hard_one_capped() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    code = "from ferryman.open_files import raise_limit; print(raise_limit())"
    shown = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard)),
    ).stdout
    assert int(shown) == (CAP if hard == resource.RLIM_INFINITY else min(hard, CAP))


def test_a_worker_out_of_descriptors_names_the_limit_not_a_disk() -> None:
    # An EMFILE from opening an attempt's file: the value the system gives, built here because
    # reaching it for real in this test process would starve pytest itself.
    line = _os_error(OSError(errno.EMFILE, "Too many open files", "/home/w/workspace/1/0/logs.log"))
    assert "too many open files opening /home/w/workspace/1/0/logs.log" in line
    assert "RLIMIT_NOFILE" in line and "ulimit -n" in line and "LimitNOFILE" in line
    assert "free space" not in line and "disk" not in line


def test_the_system_wide_table_being_full_is_told_apart() -> None:
    line = describe(OSError(errno.ENFILE, "Too many open files in system"))
    assert "fs.file-max" in line and "ulimit" not in line
