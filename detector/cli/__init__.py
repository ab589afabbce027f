"""The ``detector`` command: run the service, its workers, migrations and tools.

One module per group of commands: `service` (up, api, worker, db), `predict`,
`bench` and `video` (make-video).
"""

from __future__ import annotations

import click

from detector.cli.bench import bench
from detector.cli.predict import predict
from detector.cli.service import api, db, up, worker
from detector.cli.video import make_video


@click.group()
def main() -> None:
    """detector: batch video object detection (API, Celery workers, tools)."""


for command in (up, api, worker, db, predict, bench, make_video):
    main.add_command(command)

__all__ = ["main"]
