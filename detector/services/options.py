"""A job's options: what is analysed (a span, a stride or a sampling rate, some
classes) and whether objects are tracked, read from the upload's form fields.

Every field is checked here, with a message that names it; the API answers 400
with that message and keeps nothing of the upload.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from detector.config import TRUE_WORDS
from detector.detection.labels import stored_labels
from detector.services.errors import InvalidInput
from detector.video.selection import FrameSelection

FALSE_WORDS = frozenset({"0", "false", "no", "off"})

# Limits that keep the values meaningful (and inside the database's integers).
MAX_SAMPLE_FPS = 1000.0
MAX_FRAME_STRIDE = 1_000_000
MAX_SECONDS = 10_000_000.0  # about 115 days


@dataclass(frozen=True)
class JobOptions:
    """What a job analyses and whether it tracks: stored on the job, echoed by the API."""

    selection: FrameSelection = field(default_factory=FrameSelection)
    classes: tuple[int, ...] | None = None
    track: bool = False
    # The model's name in the deployment's catalog (None: the default).
    model: str | None = None
    # That model's label set, class id -> label, which the job keeps (None: not known).
    labels: Mapping[int, str] | None = field(default=None, compare=False)

    def as_columns(self) -> dict[str, Any]:
        """The job's columns for these options."""
        return {
            "sample_fps": self.selection.sample_fps,
            "frame_stride": self.selection.frame_stride,
            "start_time": self.selection.start,
            "end_time": self.selection.end,
            "classes": list(self.classes) if self.classes is not None else None,
            "track": self.track,
            "model_key": self.model,
            "labels": stored_labels(self.labels) if self.labels is not None else None,
        }


def _number(
    form: Mapping[str, Any], name: str, low: float, high: float, *, exclusive_low: bool
) -> float | None:
    raw = form.get(name)
    if raw is None or str(raw).strip() == "":
        return None
    bound = f"greater than {low:g}" if exclusive_low else f"at least {low:g}"
    try:
        value = float(str(raw).strip())
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and (value > low if exclusive_low else value >= low) and value <= high):
        raise InvalidInput(f"{name} must be a number {bound} and at most {high:g}; got {str(raw)[:40]!r}")
    return value


def _integer(form: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    raw = form.get(name)
    if raw is None or str(raw).strip() == "":
        return None
    text = str(raw).strip()
    if not text.isdecimal() or not low <= int(text) <= high:
        raise InvalidInput(f"{name} must be a whole number from {low} to {high}; got {text[:40]!r}")
    return int(text)


def parse_bool(form: Mapping[str, Any], name: str) -> bool:
    raw = form.get(name)
    if raw is None or str(raw).strip() == "":
        return False
    text = str(raw).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise InvalidInput(f"{name} must be true or false; got {str(raw)[:40]!r}")


def parse_classes(raw: Any, labels: Mapping[int, str]) -> tuple[int, ...] | None:
    """Class ids from comma-separated labels or ids of the model's label set ``labels``
    (class id -> label); None for every class."""
    if raw is None or str(raw).strip() == "":
        return None
    by_name = {name.lower(): class_id for class_id, name in labels.items()}
    chosen: list[int] = []
    unknown: list[str] = []
    for item in (part.strip() for part in str(raw).split(",")):
        if not item:
            continue
        if item.isdecimal() and int(item) in labels:
            class_id: int | None = int(item)
        else:
            class_id = by_name.get(item.lower())
        if class_id is None:
            unknown.append(item)
        elif class_id not in chosen:
            chosen.append(class_id)
    if unknown:
        raise InvalidInput(
            f"classes: unknown label {', '.join(repr(u[:40]) for u in unknown[:5])}; the model's "
            f"labels are: {', '.join(labels[i] for i in sorted(labels))} (or their class ids; GET /api/labels)"
        )
    if not chosen:
        raise InvalidInput("classes must name at least one label (leave it out for every class)")
    return tuple(sorted(chosen))


def parse_job_options(
    form: Mapping[str, Any], labels: Mapping[int, str], model: str | None = None
) -> JobOptions:
    """The job options in an upload's form fields (absent ones take their defaults);
    ``labels`` are those of ``model``, the model the job chose (detector.services.models.choose).

    Raises:
        InvalidInput: a field's value is not allowed; the message names the field.
    """
    sample_fps = _number(form, "sample_fps", 0.0, MAX_SAMPLE_FPS, exclusive_low=True)
    frame_stride = _integer(form, "frame_stride", 1, MAX_FRAME_STRIDE)
    if sample_fps is not None and frame_stride is not None:
        raise InvalidInput("sample_fps and frame_stride: give one or the other, not both")
    start = _number(form, "start", 0.0, MAX_SECONDS, exclusive_low=False)
    end = _number(form, "end", 0.0, MAX_SECONDS, exclusive_low=True)
    if end is not None and end <= (start or 0.0):
        raise InvalidInput(f"end ({end:g} s) must be after start ({start or 0:g} s)")
    selection = FrameSelection(sample_fps=sample_fps, frame_stride=frame_stride, start=start, end=end)
    return JobOptions(
        selection=selection,
        classes=parse_classes(form.get("classes"), labels),
        track=parse_bool(form, "track"),
        model=model,
        labels=labels,
    )


def check_selection_fits(selection: FrameSelection, duration: float | None) -> None:
    """Refuse a span that starts at or after the end of a video ``duration`` seconds long.

    Raises:
        InvalidInput: the selection would hold no frame.
    """
    if selection.start is not None and duration and selection.start >= duration:
        raise InvalidInput(
            f"start ({selection.start:g} s) is at or after the end of the video ({duration:g} s): "
            f"no frame would be analysed"
        )
