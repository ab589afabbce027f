"""The command-line client: `detector login`, `submit`, `wait`, `jobs` and `results`.

They use only the public HTTP API (detector.client), so they work against any
deployment: the server and API key come from --server/--api-key, then
DETECTOR_SERVER/DETECTOR_API_KEY, then ~/.config/detector/client.toml (which
`detector login` writes). Progress bars (rich) go to stderr; stdout carries only
what a script reads: a job id, or JSON.

Exit codes: 0 the job succeeded (or the command did what it says), 1 the job
failed or was cancelled, 2 a usage error (bad option, no server or key given),
3 the server refused the request or could not be reached, 130 interrupted
(Ctrl-C; the job keeps running).
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from detector.client import ApiError, ClientSettings, DetectorClient, MissingSetting, NetworkError
from detector.client.settings import config_path, write_file
from detector.exports import FORMATS

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_SERVER, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
FINISHED = ("succeeded", "failed", "cancelled")

_F = TypeVar("_F", bound=Callable[..., Any])
err = Console(stderr=True)


def _fail(code: int, message: str) -> NoReturn:
    err.print(message, style="red" if code else None, markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)


def _client_errors(command: _F) -> _F:
    """API and network errors exit 3 with the server's message; missing settings exit 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MissingSetting as exc:
            raise click.UsageError(str(exc)) from None
        except ApiError as exc:
            _fail(EXIT_SERVER, f"error: the server answered {exc.status} {exc.code}: {exc.message}")
        except NetworkError as exc:
            _fail(EXIT_SERVER, f"error: cannot reach the server: {exc}")

    return cast(_F, wrapper)


def server_options(command: _F) -> _F:
    command = click.option(
        "--api-key", default=None, help="API key (default: DETECTOR_API_KEY, then the config file)"
    )(command)
    command = click.option(
        "--server",
        default=None,
        help="Base URL of the service, e.g. http://127.0.0.1:8000 (default: DETECTOR_SERVER, "
        "then the config file)",
    )(command)
    return command


def _client(server: str | None, api_key: str | None) -> DetectorClient:
    settings = ClientSettings.resolve(server, api_key)
    return DetectorClient(settings.server, settings.require_key())


def export_options(command: _F) -> _F:
    command = click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write the export here (default: stdout)",
    )(command)
    command = click.option(
        "--export",
        type=click.Choice(EXPORT_FORMATS),
        default=None,
        help="Once the job has succeeded, write all its detections: json (every page as one "
        "document) or a file format of GET /api/jobs/<id>/export",
    )(command)
    return command


EXPORT_FORMATS = ("json", *FORMATS)


def job_options(command: _F) -> _F:
    """The options of POST /api/jobs that say what is analysed and whether it is tracked."""
    for flag, kind, text in reversed(
        [
            ("--sample-fps", float, "Analyse at most this many frames a second"),
            ("--frame-stride", int, "Analyse every k-th frame"),
            ("--start", float, "Analyse from this second on"),
            ("--end", float, "Analyse only frames before this second"),
            ("--classes", str, "Keep only these labels or class ids, comma-separated"),
            ("--model", str, "The model to run, by name (GET /api/models); default: the deployment's"),
        ]
    ):
        command = click.option(flag, type=kind, default=None, help=text)(command)
    return click.option("--track", is_flag=True, help="Give each object a track id across frames")(command)


def _job_fields(values: dict[str, Any]) -> dict[str, str]:
    """The form fields of the job options given on the command line."""
    names = ("sample_fps", "frame_stride", "start", "end", "classes", "model")
    fields = {name: str(values[name]) for name in names if values.get(name) is not None}
    if values.get("track"):
        fields["track"] = "true"
    return fields


def _write_export(client: DetectorClient, job_id: str, output: Path | None, fmt: str | None = None) -> None:
    if fmt in (None, "json"):
        text = json.dumps(client.all_detections(job_id))
        if output is None:
            click.echo(text)
        else:
            output.write_text(text + "\n")
    else:
        stream = output.open("wb") if output is not None else sys.stdout.buffer
        try:
            for block in client.export(job_id, fmt):
                stream.write(block)
        finally:
            if output is not None:
                stream.close()
            else:
                stream.flush()
    if output is not None:
        err.print(f"detections written to {output}", markup=False, highlight=False, soft_wrap=True)


def wait_for(client: DetectorClient, job_id: str, poll: float) -> dict[str, Any]:
    """Poll the job until it finishes, with a progress bar of frames; Ctrl-C exits 130."""
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=False,
        ) as bar:
            task = bar.add_task("queued", total=None)
            while True:
                job = client.job(job_id)
                progress = job["progress"]
                bar.update(
                    task,
                    description=progress.get("stage") or job["status"],
                    completed=progress["frames_done"],
                    total=progress["frames_total"],
                )
                if job["status"] in FINISHED:
                    return job
                time.sleep(poll)
    except KeyboardInterrupt:
        _fail(
            EXIT_INTERRUPTED,
            f"stopped waiting; job {job_id} keeps running on the server.\n"
            f"Resume waiting with: detector wait {job_id}",
        )


def _finish(client: DetectorClient, job: dict[str, Any], export: str | None, output: Path | None) -> None:
    status = job["status"]
    if status == "succeeded":
        err.print(
            f"job {job['id']} succeeded: {job['objects_total']} objects",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        if export or output:
            _write_export(client, job["id"], output, export)
        sys.exit(EXIT_OK)
    reason = f": {job['error']}" if job.get("error") else ""
    _fail(EXIT_JOB_FAILED, f"job {job['id']} {status}{reason}")


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


@click.command()
@click.argument("video_or_url")
@server_options
@click.option(
    "--score-threshold", type=click.FloatRange(0, 1), default=None, help="Keep objects scoring this"
)
@click.option("--callback-url", default=None, help="The server POSTs the finished job to this URL")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the job to finish, with a progress bar")
@job_options
@export_options
@click.option(
    "--poll", type=click.FloatRange(0.05), default=1.0, show_default=True, help="Seconds between polls"
)
@_client_errors
def submit(
    video_or_url: str,
    server: str | None,
    api_key: str | None,
    score_threshold: float | None,
    callback_url: str | None,
    wait_: bool,
    export: str | None,
    output: Path | None,
    poll: float,
    **options: Any,
) -> None:
    """Submit a video file (uploaded) or an http(s) URL (the server downloads it).

    Prints the job id on stdout. With --wait, follows the job and exits 0 when it
    succeeded, 1 when it failed or was cancelled.
    """
    if (export or output) and not wait_:
        raise click.UsageError("--export and -o need --wait (or use `detector results JOB` later)")
    client = _client(server, api_key)
    fields = _job_fields(options)
    if _is_url(video_or_url):
        job = client.submit_url(
            video_or_url, score_threshold=score_threshold, callback_url=callback_url, options=fields
        )
    else:
        path = Path(video_or_url)
        if not path.is_file():
            raise click.BadParameter(f"{path} is not a file nor an http(s) URL", param_hint="VIDEO_OR_URL")
        with Progress(
            TextColumn("[bold]upload"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err,
        ) as bar:
            task = bar.add_task("upload", total=path.stat().st_size)
            job = client.submit_file(
                path,
                score_threshold=score_threshold,
                callback_url=callback_url,
                on_progress=lambda n: bar.advance(task, n),
                on_restart=lambda: bar.reset(task),
                options=fields,
            )
    click.echo(job["id"])
    if wait_:
        _finish(client, wait_for(client, job["id"], poll), export, output)


@click.command()
@click.argument("job_id")
@server_options
@export_options
@click.option(
    "--poll", type=click.FloatRange(0.05), default=1.0, show_default=True, help="Seconds between polls"
)
@_client_errors
def wait(
    job_id: str, server: str | None, api_key: str | None, export: str | None, output: Path | None, poll: float
) -> None:
    """Wait for a job to finish: exit 0 when it succeeded, 1 when it failed or was cancelled."""
    client = _client(server, api_key)
    _finish(client, wait_for(client, job_id, poll), export, output)


@click.command()
@server_options
@click.option("--page", type=click.IntRange(1), default=1, show_default=True)
@click.option("--per-page", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON page instead of a table")
@_client_errors
def jobs(server: str | None, api_key: str | None, page: int, per_page: int, as_json: bool) -> None:
    """List your jobs, newest first."""
    answer = _client(server, api_key).jobs(page, per_page)
    if as_json:
        click.echo(json.dumps(answer))
        return
    rows = [("ID", "STATUS", "PROGRESS", "CREATED", "FILE")]
    for job in answer["jobs"]:
        rows.append(
            (
                job["id"],
                job["status"],
                f"{job['progress']['percent']:g}%",
                job["created_at"][:19].replace("T", " "),
                job["filename"],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[4]
        )
    err.print(
        f"page {answer['page']}, {answer['total']} jobs in all", markup=False, highlight=False, soft_wrap=True
    )


@click.command()
@click.argument("job_id")
@server_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(EXPORT_FORMATS),
    default="json",
    show_default=True,
    help="json (every page as one document) or a file format of GET /api/jobs/<id>/export",
)
@_client_errors
def results(job_id: str, server: str | None, api_key: str | None, output: Path | None, fmt: str) -> None:
    """Write a succeeded job's detections (every page as one JSON document, or an export)."""
    client = _client(server, api_key)
    job = client.job(job_id)
    if job["status"] in ("failed", "cancelled"):
        _finish(client, job, None, None)
    if job["status"] != "succeeded":
        _fail(EXIT_SERVER, f"job {job_id} is {job['status']}; wait for it with: detector wait {job_id}")
    _write_export(client, job_id, output, fmt)


@click.command()
@click.option("--server", required=True, help="Base URL of the service, e.g. http://127.0.0.1:8000")
@click.option("--username", prompt=True)
@click.option("--password", prompt=True, hide_input=True)
@click.option("--key-name", default="detector CLI", show_default=True, help="The new API key's name")
@click.option("--print-key", is_flag=True, help="Print the key on stdout instead of saving it")
@_client_errors
def login(server: str, username: str, password: str, key_name: str, print_key: bool) -> None:
    """Create an API key with your username and password, and keep it in the config file."""
    key = DetectorClient(server).login(username, password, key_name)
    if print_key:
        click.echo(key["key"])
        return
    path = write_file(server.rstrip("/"), key["key"], config_path())
    err.print(f"API key {key['prefix']}… saved to {path}", markup=False, highlight=False, soft_wrap=True)


COMMANDS = (login, submit, wait, jobs, results)
