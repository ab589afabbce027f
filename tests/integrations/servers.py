"""Local HTTP servers for the webhook and download tests, on loopback only."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)


class Recorder:
    """What a server got, and a handler per path prefix: (handler, request) -> None."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.lock = threading.Lock()

    def of(self, prefix: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def wait_for(self, prefix: str, count: int, timeout: float = 60) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.of(prefix)
            if len(got) >= count:
                return got
            time.sleep(0.1)
        raise AssertionError(f"{prefix}: {len(self.of(prefix))} requests, wanted {count}")


Route = Callable[[BaseHTTPRequestHandler, Received, int], None]


@contextmanager
def serve(routes: dict[str, Route], host: str = "127.0.0.1") -> Iterator[tuple[str, Recorder]]:
    """An HTTP server on ``host`` (loopback) and a free port; yields its base URL and recorder.

    A route gets the handler, the request and how many requests its path got before.
    """
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Received(self.path, {k: v for k, v in self.headers.items()}, body)
            with recorder.lock:
                seen = sum(1 for r in recorder.requests if r.path == self.path)
                recorder.requests.append(request)
            for prefix, route in sorted(routes.items(), key=lambda kv: -len(kv[0])):
                if self.path.startswith(prefix):
                    route(self, request, seen)
                    return
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _handle

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}", recorder
    finally:
        server.shutdown()
        server.server_close()


def answer(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", **headers: str) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def file_route(
    data: bytes, *, ranges: bool = True, cut_first_at: int | None = None, content_type: str = "video/mp4"
) -> Route:
    """Serves ``data``; with ``ranges``, honours ``Range: bytes=N-`` with a 206. With
    ``cut_first_at``, the first request's connection closes after that many bytes."""

    def route(handler: BaseHTTPRequestHandler, request: Received, seen: int) -> None:
        start = 0
        wanted = request.headers.get("Range", "")
        if ranges and wanted.startswith("bytes=") and wanted.endswith("-"):
            start = int(wanted[6:-1])
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            handler.send_response(200)
        if ranges:
            handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data) - start))
        handler.end_headers()
        if cut_first_at is not None and seen == 0:
            handler.wfile.write(data[start:cut_first_at])
            handler.wfile.flush()
            handler.close_connection = True
            return
        handler.wfile.write(data[start:])

    return route


def unsized_route(size: int, content_type: str = "video/mp4") -> Route:
    """``size`` bytes with no Content-Length (the connection's end ends the body)."""

    def route(handler: BaseHTTPRequestHandler, request: Received, seen: int) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Connection", "close")
        handler.end_headers()
        block = b"\0" * 65536
        sent = 0
        try:
            while sent < size:
                handler.wfile.write(block)
                sent += len(block)
        except OSError:
            pass  # the client stopped reading: what the test wants
        handler.close_connection = True

    return route


def trickle_route(data: bytes, pieces: int, pause: float, content_type: str = "video/mp4") -> Route:
    """Serves ``data`` (with its Content-Length) in ``pieces`` parts, ``pause`` seconds
    apart: a slow link that never stops for long."""

    def route(handler: BaseHTTPRequestHandler, request: Received, seen: int) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        size = -(-len(data) // pieces)
        try:
            for start in range(0, len(data), size):
                handler.wfile.write(data[start : start + size])
                handler.wfile.flush()
                time.sleep(pause)
        except OSError:
            pass  # the client gave up
        handler.close_connection = True

    return route


def stalling_route(
    data: bytes,
    *,
    send: int = 0,
    pause: float = 5.0,
    before_headers: bool = False,
    content_type: str = "video/mp4",
) -> Route:
    """A server that stops sending: ``send`` bytes of ``data`` (from where a ``Range``
    asks), then nothing for ``pause`` seconds, then the connection closes; with
    ``before_headers``, it waits ``pause`` seconds before it answers at all."""

    def route(handler: BaseHTTPRequestHandler, request: Received, seen: int) -> None:
        if before_headers:
            time.sleep(pause)
        start = 0
        wanted = request.headers.get("Range", "")
        if wanted.startswith("bytes=") and wanted.endswith("-"):
            start = int(wanted[6:-1])
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            handler.send_response(200)
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data) - start))
        handler.end_headers()
        try:
            handler.wfile.write(data[start : start + send])
            handler.wfile.flush()
            if not before_headers:
                time.sleep(pause)
        except OSError:
            pass
        handler.close_connection = True

    return route
