"""Headless Chromium (Debian's, through Playwright) against a live service.

The browser is /usr/bin/chromium; Playwright's own browsers are never
downloaded. Without it (or without Playwright) the browser tests skip, and fail
under CI=true (`missing_tool`). A `Browser` page records what must never
happen: JavaScript dialogs (an injected ``alert``), uncaught errors, and
console errors (Content-Security-Policy violations are reported there).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing_tool

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Set to 1 to write the screenshots in docs/images (they are committed).
SCREENSHOTS = os.environ.get("DETECTOR_SCREENSHOTS") == "1"
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        missing_tool(f"Chromium is not at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_tool("Playwright for Python is not installed (pip install playwright; no browser download)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """A page, and what it did that a test must check."""

    page: Any
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def expect_console_error(self, fragment: str, times: int | None = 1) -> None:
        """Console errors containing ``fragment`` were meant to happen (refused requests):
        exactly ``times`` of them, or any number but none when ``times`` is None."""
        matching = [m for m in self.console_errors if fragment in m]
        assert matching and (times is None or len(matching) == times), (fragment, self.console_errors)
        self.console_errors = [m for m in self.console_errors if fragment not in m]

    def assert_clean(self) -> None:
        assert self.dialogs == [], f"a JavaScript dialog opened: {self.dialogs}"
        assert self.errors == [], f"uncaught errors: {self.errors}"
        assert self.console_errors == [], f"console errors: {self.console_errors}"


@pytest.fixture
def browser_page(chromium: Any) -> Iterator[Any]:
    """``open(base_url)``: a fresh context (no cookies) and page, 1280x800, watched."""
    contexts: list[Any] = []

    def open_page(base_url: str, viewport: dict[str, int] = DESKTOP) -> Watched:
        context = chromium.new_context(viewport=viewport, base_url=base_url, accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        watched = Watched(page)

        def on_dialog(dialog: Any) -> None:
            watched.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda error: watched.errors.append(str(error)))
        page.on(
            "console",
            lambda message: watched.console_errors.append(message.text) if message.type == "error" else None,
        )
        return watched

    yield open_page
    for context in contexts:
        context.close()


def screenshot(page: Any, name: str) -> None:
    """Save docs/images/<name> when DETECTOR_SCREENSHOTS=1 (normal runs leave the docs alone)."""
    if SCREENSHOTS:
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        page.evaluate("() => window.scrollTo(0, 0)")
        page.mouse.move(0, 0)  # no hover state in the picture
        page.screenshot(path=str(DOCS_IMAGES / name))


def register(page: Any, username: str, password: str) -> None:
    """Create an account through the page's form; answers once the job list shows."""
    page.goto("/#/register")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("form.auth button[type=submit]")
    page.wait_for_selector("#upload-form")
