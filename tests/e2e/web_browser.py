"""Debian's Chromium driven by Playwright (from PyPI), for the web UI's tests: nothing downloads a
browser. Screenshots go to the test's tmp dir, or to FERRYMAN_SCREENSHOTS (e.g. docs/images)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("FERRYMAN_TEST_CHROMIUM", "/usr/bin/chromium"))
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 60_000


def need_chromium() -> None:
    if CHROMIUM.exists() or shutil.which(str(CHROMIUM)):
        return
    reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@contextmanager
def browser() -> Iterator[Any]:
    """A headless Chromium; its pages time out after a minute (a sync may take seconds)."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def new_page(chromium: Any, base_url: str, viewport: dict[str, int] = DESKTOP) -> Any:
    context = chromium.new_context(base_url=base_url, viewport=viewport, timezone_id="Europe/Paris")
    context.set_default_timeout(WAIT_MS)
    return context.new_page()


class Screens:
    """Full-page screenshots, named by what they show."""

    def __init__(self, tmp: Path) -> None:
        kept = os.environ.get("FERRYMAN_SCREENSHOTS")
        self.folder = Path(kept) if kept else tmp / "screens"
        self.folder.mkdir(parents=True, exist_ok=True)

    def take(self, page: Any, name: str) -> Path:
        path = self.folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path
