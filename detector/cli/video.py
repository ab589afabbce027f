"""`detector make-video`: write a generated test video (moving shapes), to try the service."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("make-video")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--frames", default=100, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--width", default=640, show_default=True, type=click.IntRange(16, 7680))
@click.option("--height", default=360, show_default=True, type=click.IntRange(16, 4320))
@click.option("--fps", default=25, show_default=True, type=click.IntRange(1, 240))
def make_video(out: Path, frames: int, width: int, height: int, fps: int) -> None:
    """Write OUT: an H.264 MP4 of moving shapes, for trying the service without a video."""
    from detector.video.synthetic import make_video as write

    if width % 2 or height % 2:
        raise click.BadParameter("width and height must be even (H.264 in yuv420p)")
    path = write(out, frames=frames, width=width, height=height, fps=fps)
    click.echo(f"wrote {path} ({frames} frames of {width}x{height} at {fps} frames/s)")
