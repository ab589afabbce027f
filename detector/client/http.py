"""The HTTP client: one method per API call the command line needs.

Uploads are streamed from disk as multipart/form-data with a known length (no
whole-file read into memory), reporting each block sent; every submit carries an
``Idempotency-Key``, so a retry after a dropped connection cannot make two jobs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import requests

BLOCK = 256 * 1024
RETRIED_STATUSES = {502, 503, 504}


class ApiError(Exception):
    """The server answered with an error (the API's error model when it sent one)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class NetworkError(Exception):
    """The server could not be reached, or the connection broke."""


class Upload:
    """A multipart/form-data body read from a file as it is sent: iterable, with a length."""

    def __init__(
        self,
        path: Path,
        fields: dict[str, str],
        on_progress: Callable[[int], None] | None = None,
        file_field: str = "video",
        boundary: str | None = None,
    ) -> None:
        self.path = path
        self.boundary = boundary or uuid.uuid4().hex
        self.on_progress = on_progress
        head = b"".join(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in fields.items()
        )
        filename = path.name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        head += (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        self.head = head
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.file_size = path.stat().st_size

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self.head) + self.file_size + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        with self.path.open("rb") as f:
            while block := f.read(BLOCK):
                yield block
                if self.on_progress is not None:
                    self.on_progress(len(block))
        yield self.tail


class DetectorClient:
    """The API of one deployment (``server`` is its base URL, without /api), with an API key."""

    def __init__(
        self, server: str, api_key: str | None = None, timeout: float = 60, retries: int = 2
    ) -> None:
        self.server = server.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "detector-client"

    def url(self, path: str) -> str:
        return f"{self.server}/api{path}"

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"X-API-Key": self.api_key} if self.api_key else {}
        return {**headers, **(extra or {})}

    def request(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> Any:
        """The JSON answer of one call (None for 204), retrying dropped connections and 502-504.

        Raises:
            ApiError: the server refused the request.
            NetworkError: no answer.
        """
        kwargs["headers"] = self._headers(kwargs.get("headers"))
        kwargs.setdefault("timeout", self.timeout)
        attempts = 1 + (self.retries if retry else 0)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                body = kwargs.get("data")
                if callable(body):  # a fresh body per attempt (an upload streams once)
                    response = self.session.request(method, self.url(path), **{**kwargs, "data": body()})
                else:
                    response = self.session.request(method, self.url(path), **kwargs)
            except requests.RequestException as exc:
                if last:
                    raise NetworkError(f"{self.server}: {exc}") from None
                time.sleep(0.5 * 2**attempt)
                continue
            if response.status_code in RETRIED_STATUSES and not last:
                time.sleep(0.5 * 2**attempt)
                continue
            return _answer(response)
        raise AssertionError("unreachable")

    # ---- accounts and keys ------------------------------------------------------------
    def login(self, username: str, password: str, key_name: str) -> dict[str, Any]:
        """Log in with a password and create an API key (the answer has the secret, `key`)."""
        tokens = self.request("POST", "/auth/login", json={"username": username, "password": password})
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        saved, self.api_key = self.api_key, None
        try:
            key: dict[str, Any] = self.request("POST", "/keys", json={"name": key_name}, headers=bearer)
        finally:
            self.api_key = saved
        return key

    # ---- jobs -------------------------------------------------------------------------
    def submit_file(
        self,
        path: Path,
        *,
        score_threshold: float | None = None,
        callback_url: str | None = None,
        on_progress: Callable[[int], None] | None = None,
        on_restart: Callable[[], None] | None = None,
        idempotency_key: str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Upload a video; ``on_progress(bytes)`` after each block sent, ``on_restart()``
        before a retry sends it again. ``options`` are more form fields of the job
        (``sample_fps``, ``classes``, ``track``...), as POST /api/jobs takes them."""
        fields = {**_fields(score_threshold, callback_url), **(options or {})}
        boundary = uuid.uuid4().hex
        attempts = {"n": 0}

        def body() -> Upload:
            if attempts["n"] and on_restart is not None:
                on_restart()
            attempts["n"] += 1
            return Upload(path, fields, on_progress, boundary=boundary)

        headers = {
            "Idempotency-Key": idempotency_key or uuid.uuid4().hex,
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        }
        job: dict[str, Any] = self.request(
            "POST", "/jobs", data=body, headers=headers, timeout=max(self.timeout, 3600)
        )
        return job

    def submit_url(
        self,
        url: str,
        *,
        score_threshold: float | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        fields = {**_fields(score_threshold, callback_url), **(options or {}), "source_url": url}
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        # multipart, like a file upload, so the server reads the same form
        files = {name: (None, value) for name, value in fields.items()}
        job: dict[str, Any] = self.request("POST", "/jobs", files=files, headers=headers)
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.request("GET", f"/jobs/{job_id}")
        return answer

    def jobs(self, page: int = 1, per_page: int = 20) -> dict[str, Any]:
        answer: dict[str, Any] = self.request("GET", "/jobs", params={"page": page, "per_page": per_page})
        return answer

    def cancel(self, job_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.request("POST", f"/jobs/{job_id}/cancel", retry=False)
        return answer

    def detection_pages(self, job_id: str, limit: int = 1000) -> Iterator[dict[str, Any]]:
        """Every page of a succeeded job's detections, in order."""
        start: int | None = 0
        while start is not None:
            page: dict[str, Any] = self.request(
                "GET", f"/jobs/{job_id}/detections", params={"start": start, "limit": limit}
            )
            yield page
            start = page["next_start"]

    def export(self, job_id: str, fmt: str) -> Iterator[bytes]:
        """A succeeded job's export in format ``fmt`` (coco, mot, cvat, csv, jsonl), streamed.

        Raises:
            ApiError: the server refused (409 for mot of an untracked job, say).
            NetworkError: no answer.
        """
        try:
            response = self.session.get(
                self.url(f"/jobs/{job_id}/export"),
                params={"format": fmt},
                headers=self._headers(),
                timeout=self.timeout,
                stream=True,
            )
        except requests.RequestException as exc:
            raise NetworkError(f"{self.server}: {exc}") from None
        if not response.ok:
            _answer(response)  # raises the API's error
        with response:
            try:
                yield from response.iter_content(chunk_size=BLOCK)
            except requests.RequestException as exc:
                raise NetworkError(f"{self.server}: the export was cut off: {exc}") from None

    def all_detections(self, job_id: str) -> dict[str, Any]:
        """All frames of a succeeded job, as one page (the shape `detector predict` prints)."""
        frames: list[Any] = []
        frames_total = 0
        for page in self.detection_pages(job_id):
            frames.extend(page["frames"])
            frames_total = page["frames_total"]
        return {
            "job_id": job_id,
            "frames_total": frames_total,
            "start": 0,
            "limit": max(frames_total, 1),
            "next_start": None,
            "frames": frames,
        }


def _fields(score_threshold: float | None, callback_url: str | None) -> dict[str, str]:
    fields: dict[str, str] = {}
    if score_threshold is not None:
        fields["score_threshold"] = repr(float(score_threshold))
    if callback_url:
        fields["callback_url"] = callback_url
    return fields


def _answer(response: requests.Response) -> Any:
    if response.status_code == 204:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.ok and body is not None:
        return body
    if isinstance(body, dict) and "message" in body:
        raise ApiError(response.status_code, str(body.get("error", "error")), str(body["message"]))
    text = response.text.strip()[:200] or response.reason
    raise ApiError(response.status_code, "error", f"not an API answer: {text}")
