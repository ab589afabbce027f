"""The web app's files as the API serves them: the page at /, its modules under /app/,
the security headers on them (and not on the Swagger UI), and the rules the files
keep (no inline script or style, nothing from another origin, no HTML from data)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from detector.web import CONTENT_SECURITY_POLICY, STATIC

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
FILES = sorted(p for p in STATIC.rglob("*") if p.is_file())
SCRIPTS = [p for p in FILES if p.suffix == ".js"]


def url_of(path: Path) -> str:
    return "/app/" + path.relative_to(STATIC).as_posix()


def test_the_policy_is_the_one_documented():
    assert CONTENT_SECURITY_POLICY == POLICY


def test_the_page_is_served_at_the_root_with_the_security_headers(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"] == POLICY
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-cache"
    assert '<script type="module" src="/app/js/main.js"></script>' in page.get_data(as_text=True)
    assert "Set-Cookie" not in page.headers


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_file_is_served_with_its_type_and_the_headers(client, path):
    response = client.get(url_of(path))
    assert response.status_code == 200
    assert response.get_data() == path.read_bytes()
    expected = {
        ".js": {"text/javascript", "application/javascript"},
        ".css": {"text/css"},
        ".html": {"text/html"},
        ".svg": {"image/svg+xml"},
    }[path.suffix]
    assert response.mimetype in expected  # nosniff: a module with another type would not run
    assert response.headers["Content-Security-Policy"] == POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_missing_file_is_the_services_json_404(client):
    response = client.get("/app/js/nope.js")
    assert response.status_code == 404
    assert response.is_json and response.json["error"] == "not_found"


def test_the_swagger_ui_and_the_api_keep_their_own_headers(client):
    swagger = client.get("/api/")
    assert swagger.status_code == 200 and swagger.mimetype == "text/html"
    # The Swagger UI runs inline scripts: the web app's policy would break it.
    assert "Content-Security-Policy" not in swagger.headers
    assert "<script" in swagger.get_data(as_text=True)
    jobs = client.get("/api/jobs")
    assert jobs.status_code == 401 and "Content-Security-Policy" not in jobs.headers
    assert client.get("/api/swagger.json").status_code == 200


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.script_text.append(data)


def test_the_page_has_no_inline_script_style_or_handler():
    parser = _Tags()
    parser.feed((STATIC / "index.html").read_text())
    assert parser.script_text == []
    assert not any(tag == "style" for tag, _ in parser.tags)
    for tag, attrs in parser.tags:
        assert "style" not in attrs, tag
        assert not [name for name in attrs if name.startswith("on")], tag
        if tag == "script":
            assert attrs.get("src", "").startswith("/app/") and attrs.get("type") == "module"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_nothing_comes_from_another_origin(path):
    text = path.read_text()
    # The SVG namespace is a name, not a request (the icon's xmlns, charts.js's createElementNS).
    text = text.replace('"http://www.w3.org/2000/svg"', "")
    assert not re.search(r"""https?://|["'(]//[a-z]""", text, re.I), path.name
    assert "@import" not in text


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_no_script_parses_data_as_html_or_code(path):
    source = path.read_text()
    for forbidden in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
    ):
        # dom.js names innerHTML and outerHTML only to refuse them.
        if path.name == "dom.js" and forbidden in ("innerHTML", "outerHTML"):
            assert f'"{forbidden}"' in source
            continue
        assert forbidden not in source, f"{path.name} uses {forbidden}"
    assert 'setAttribute("style"' not in source


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_every_module_import_is_a_served_file(path):
    for target in re.findall(r"""^import .* from "(\.[^"]+)";$""", path.read_text(), re.M):
        assert (path.parent / target).resolve().is_file(), f"{path.name} imports {target}"
