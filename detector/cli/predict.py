"""`detector predict`: detect in one process, no queue: the pipeline's baseline."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import click

from detector.cli.common import config, local_backend, model_settings, on_model_allocator, settings
from detector.exports import FORMATS

OUTPUT_FORMATS = ("json", *FORMATS)


@click.command()
@click.argument("video", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="write the results here instead of standard output",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(OUTPUT_FORMATS),
    default="json",
    show_default=True,
    help="json: the detections page; or an export format, as GET /api/jobs/<id>/export writes it",
)
@click.option(
    "--score-threshold", type=click.FloatRange(0, 1), default=None, help="default: DEFAULT_SCORE_THRESHOLD"
)
@click.option("--sample-fps", type=float, default=None, help="analyse at most this many frames a second")
@click.option("--frame-stride", type=int, default=None, help="analyse every k-th frame")
@click.option("--start", type=float, default=None, help="analyse from this second on")
@click.option("--end", type=float, default=None, help="analyse only frames before this second")
@click.option("--classes", default=None, help="keep only these labels or class ids, comma-separated")
@click.option("--track", is_flag=True, help="give each object a track id across frames")
@click.option(
    "--model",
    default=None,
    help="the model's name in DETECTOR_MODELS (GET /api/models); default: the default model",
)
@click.option(
    "--render",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="also write the annotated video (H.264 MP4) here",
)
@click.option(
    "--analytics",
    "analytics_spec",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="also run the analytics of this spec (JSON, as POST /api/jobs/<id>/analytics takes it; "
    "tracks the objects); docs/analytics.md",
)
@click.option(
    "--analytics-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="write the analytics' results here (default: standard output, after the detections)",
)
def predict(
    video: Path,
    out: Path | None,
    output_format: str,
    score_threshold: float | None,
    sample_fps: float | None,
    frame_stride: int | None,
    start: float | None,
    end: float | None,
    classes: str | None,
    track: bool,
    model: str | None,
    render: Path | None,
    analytics_spec: Path | None,
    analytics_out: Path | None,
) -> None:
    """Detect objects in VIDEO in this process (no queue): the pipeline's baseline.

    Prints the same JSON as GET /api/jobs/<id>/detections, with every analysed
    frame (or, with --format, the job's export), and takes the same options as
    POST /api/jobs. Runs on tcmalloc when the system has it, as the workers do
    (DETECTOR_ALLOCATOR), and, as `detector up` does, runs torchvision's model on
    OpenVINO on a machine without a GPU unless DETECTOR_BACKEND or DETECTOR_MODELS is set.
    """
    from detector.detection.labels import label_set
    from detector.exports import ExportError, ExportSource, export
    from detector.pipeline.predict import predict as run_predict
    from detector.services.errors import InvalidInput
    from detector.services.options import parse_job_options
    from detector.video import probe

    on_model_allocator()
    service = settings()
    local = local_backend()  # as `detector up` runs the model on this machine
    chosen = model_settings(model, local)
    threshold = service.default_score_threshold if score_threshold is None else score_threshold
    if threshold < chosen.min_score:
        raise click.BadParameter(
            f"{threshold} is below the model's score floor {chosen.min_score} (its min_score, "
            "else DETECTOR_MIN_SCORE): objects under it are never kept",
            param_hint="--score-threshold",
        )
    labels = label_set(chosen)
    form = {
        "sample_fps": sample_fps,
        "frame_stride": frame_stride,
        "start": start,
        "end": end,
        "classes": classes,
        "track": "true" if track or analytics_spec is not None else None,
    }
    try:
        options = parse_job_options({k: v for k, v in form.items() if v is not None}, labels)
    except InvalidInput as exc:
        raise click.UsageError(exc.message) from None
    info = probe(video)
    source = ExportSource(
        name=video.name,
        width=info.width,
        height=info.height,
        frame_count=info.frame_count,
        fps=info.fps,
        labels=labels,
        tracked=options.track,
    )
    if output_format != "json":
        try:
            export(output_format, source, [])  # refuse mot without --track before the model runs
        except ExportError as exc:
            raise click.UsageError(str(exc)) from None

    spec = _analytics_spec(analytics_spec, info.width, info.height, info.duration)
    found = run_predict(
        video,
        {**config(), **local},
        threshold,
        selection=options.selection,
        classes=options.classes,
        track=options.track,
        model=model,
    )
    with _output(out) as stream:
        if output_format == "json":
            stream.write(json.dumps(found.page()))
        else:
            for piece in export(output_format, replace(source, frame_count=found.video_frames), found.frames):
                stream.write(piece)
    timing = found.timing
    click.echo(
        f"{timing['frames']} of {timing['video_frames']} frames in {timing['seconds']:.2f} s "
        f"({timing['frames_per_second']:.2f} frames/s, {timing['model']} on "
        f"{timing['device']}, batch {timing['batch_size']}, {timing['streams']} streams, allocator {timing['allocator']})"
        + (
            f"; {len(found.tracks or [])} tracks in {timing['tracking_seconds']:.2f} s"
            if options.track
            else ""
        ),
        err=True,
    )
    if spec is not None:
        from detector.analytics import analyse_frames

        analysis = analyse_frames(spec, found.frames)
        text = json.dumps({"id": spec.spec_id, "spec": spec.as_json(), "results": analysis.results})
        if analytics_out is not None:
            analytics_out.write_text(text + "\n", encoding="utf-8")
        else:
            click.echo(text)
    if render is not None:
        from detector.render import render_video

        overlay = None
        if spec is not None:
            from detector.analytics.overlay import overlay_for

            overlay = overlay_for(spec, analysis.results)
        stats = render_video(
            video,
            render,
            found.frames,
            hold_frames=options.selection.hold_frames(info.fps),
            overlay=overlay,
        )
        click.echo(
            f"annotated video: {render} ({stats.frames} frames in {stats.seconds:.1f} s, {stats.encoder})",
            err=True,
        )


def _analytics_spec(path: Path | None, width: int, height: int, duration: float | None) -> Any:
    """The checked spec in the file at ``path`` (None without one)."""
    if path is None:
        return None
    from detector.analytics import SpecError, parse_spec

    try:
        return parse_spec(json.loads(path.read_text(encoding="utf-8")), width, height, duration)
    except (ValueError, SpecError) as exc:
        raise click.BadParameter(str(exc), param_hint="--analytics") from None


class _output:
    """Standard output, or a file written whole."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.stream: IO[str] = sys.stdout

    def __enter__(self) -> IO[str]:
        if self.path is not None:
            self.stream = self.path.open("w", encoding="utf-8")
        return self.stream

    def __exit__(self, *exc: object) -> None:
        if self.path is not None:
            self.stream.close()
        else:
            self.stream.write("\n")
            self.stream.flush()
