"""`detector predict`: detect in one process, no queue: the pipeline's baseline."""

from __future__ import annotations

import json
from pathlib import Path

import click

from detector.cli.common import config, on_model_allocator, settings


@click.command()
@click.argument("video", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="write JSON here instead of standard output",
)
@click.option(
    "--score-threshold", type=click.FloatRange(0, 1), default=None, help="default: DEFAULT_SCORE_THRESHOLD"
)
def predict(video: Path, out: Path | None, score_threshold: float | None) -> None:
    """Detect objects in VIDEO in this process (no queue): the pipeline's baseline.

    Prints the same JSON as GET /api/jobs/<id>/detections, with every frame.
    Runs on tcmalloc when the system has it, as the workers do (DETECTOR_ALLOCATOR).
    """
    from detector.pipeline.predict import predict_video

    on_model_allocator()
    service = settings()
    threshold = service.default_score_threshold if score_threshold is None else score_threshold
    if threshold < service.detector_min_score:
        raise click.BadParameter(
            f"{threshold} is below the model's score floor DETECTOR_MIN_SCORE "
            f"({service.detector_min_score}): objects under it are never kept",
            param_hint="--score-threshold",
        )
    page, timing = predict_video(video, config(), threshold)
    text = json.dumps(page)
    if out is None:
        click.echo(text)
    else:
        out.write_text(text)
    click.echo(
        f"{timing['frames']} frames in {timing['seconds']:.2f} s "
        f"({timing['frames_per_second']:.2f} frames/s, {timing['model']} on "
        f"{timing['device']}, batch {timing['batch_size']}, allocator {timing['allocator']})",
        err=True,
    )
