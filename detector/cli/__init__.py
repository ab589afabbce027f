"""The ``detector`` command: run the service, its workers, migrations and tools.

One module per group of commands: `service` (up, api, worker, db, user), `predict`,
`bench`, `video` (make-video) and `client` (login, submit, wait, jobs, results:
a client of the HTTP API).
"""

from __future__ import annotations

import click

from detector.cli.bench import bench
from detector.cli.client import COMMANDS as CLIENT_COMMANDS
from detector.cli.predict import predict
from detector.cli.service import api, db, up, user, worker
from detector.cli.video import make_video


@click.group()
def main() -> None:
    """detector: batch video object detection (API, Celery workers, tools)."""


for command in (up, api, worker, db, user, predict, bench, make_video, *CLIENT_COMMANDS):
    main.add_command(command)

__all__ = ["main"]
