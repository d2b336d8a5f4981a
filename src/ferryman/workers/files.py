"""Connector input files in the attempt dir, readable by the owner only."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

from ferryman.launchers.docker import SCRATCH_PREFIX
from ferryman.private import open_private
from ferryman.protocol.codec import dumps

SOURCE_CONFIG = "source_config.json"
SOURCE_CATALOG = "source_catalog.json"
INPUT_STATE = "input_state.json"
DESTINATION_CONFIG = "destination_config.json"
DESTINATION_CATALOG = "destination_catalog.json"
LOG_FILE = "logs.log"


def write_private_json(path: Path, document: Any) -> Path:
    """Write JSON with mode 0600 from the first byte: never world-readable, not even briefly."""
    fd = open_private(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, dumps(document))
    finally:
        os.close(fd)
    return path


def forget_configs(workdir: Path) -> None:
    """Config files hold secrets: they stay on disk only while the connectors run. So do the
    working directories of containers (a crashed engine's are removed by the recovery's call)."""
    for name in (SOURCE_CONFIG, DESTINATION_CONFIG):
        (workdir / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        for scratch in workdir.glob(f"{SCRATCH_PREFIX}*"):
            shutil.rmtree(scratch, ignore_errors=True)
