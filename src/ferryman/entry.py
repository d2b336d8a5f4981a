"""The ``ferryman`` command: the CLI's commands plus ``ferryman server`` from the HTTP API.

The two surfaces never import each other; this module, above both, puts them in one command.
"""

from __future__ import annotations

from ferryman.api.server import server
from ferryman.cli import app

app.command()(server)


def main() -> None:
    app()


__all__ = ["app", "main"]
