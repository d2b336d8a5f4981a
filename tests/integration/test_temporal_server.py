"""The session's Temporal dev server answers on the address the fixture hands out."""

from __future__ import annotations

import subprocess

from tests.temporal_support import TemporalServer, temporal_binary


def test_the_dev_server_serves_its_default_namespace(temporal_server: TemporalServer) -> None:
    binary = temporal_binary()
    assert binary is not None
    described = subprocess.run(
        [
            binary,
            "operator",
            "namespace",
            "describe",
            "--address",
            temporal_server.address,
            "--namespace",
            temporal_server.namespace,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert described.returncode == 0, described.stderr
    assert "Registered" in described.stdout
