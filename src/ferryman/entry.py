"""The ``ferryman`` command: the CLI's commands plus ``ferryman server`` from the HTTP API, which
also serves the web UI.

The surfaces never import each other; this module, above them, puts them in one command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ferryman.api.server import APP_EXTENSIONS, server
from ferryman.cli import app
from ferryman.quick_exit import leave

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ferryman.service import JobService


def _web_ui(api: FastAPI, service: JobService, auth_required: bool) -> None:
    # Imported when the server starts, not at CLI start-up (FastAPI alone is ~16 MB and 0.3 s).
    from ferryman.api.problems import serve_pages_for_problems
    from ferryman.web.app import error_page, mount

    mount(api, service, auth_required)
    serve_pages_for_problems(api, error_page)


APP_EXTENSIONS.append(_web_ui)
app.command()(server)


def main() -> None:
    """Run the command, then end without the interpreter's teardown (see quick_exit)."""
    try:
        app()
    except SystemExit as done:
        leave(done.code)
    leave(0)


__all__ = ["app", "main"]
