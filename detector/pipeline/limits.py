"""How long each pipeline task may run (docs/operations.md, "Time limits").

No limit is global: each task has the one its work needs.

- Fixed, per task (`task_limits`, given to Celery as task annotations): a chunk
  (``CHUNK_TIME_LIMIT``), planning, merging, a webhook POST, the watchdog.
- Growing with the job's frames, per message (`render_limit`, `tracking_limit`):
  an annotated video and a tracking step. The sender computes the job's limit
  and puts it on the message (`TimeLimit.options`, Celery's per-message
  ``soft_time_limit``/``time_limit``); the task checks it between frames itself
  (`Deadline`), stops there and fails with `TimeLimit.message`, which says which
  limit, how long, and the setting that raises it.
- None: a download (detector.pipeline.download) ends when no byte arrived for
  DOWNLOAD_TIMEOUT_SECONDS, however long it has been going.

Why per message, and why the task checks too: the limit depends on the job, so
it travels with the job's message, in the message's ``timelimit`` header. Both
brokers keep it (RabbitMQ, and the embedded filesystem broker, which stores the
whole message), and the prefork pool applies it whichever broker feeds it: its
timer thread under the filesystem broker, whose worker runs no event loop, and
the event loop's timers under RabbitMQ. The pool's limit only interrupts (a
signal, wherever the task is) or kills; the task's own check comes first, at a
frame boundary, with the job's state in hand, and holds also where no pool
enforces anything (a task run in process, as tests run it). The message's soft
limit, GRACE_SECONDS later, catches a task stuck inside one call (an encoder, a
read from stalled storage); its hard limit, GRACE_SECONDS after that, kills it.

No limit passes LONGEST_TASK_SECONDS (23 h): tasks acknowledge their message when
they end, and RabbitMQ delivers a message held longer than its consumer_timeout
again (30 minutes by default; docker/rabbitmq/detector.conf sets 24 hours).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from detector.config import LONGEST_TASK_SECONDS, Settings
from detector.pipeline.names import (
    CHUNK_FAILED,
    DELIVER_WEBHOOK,
    DETECT_FRAMES,
    MERGE_CHUNKS,
    PROCESS_VIDEO,
    WATCHDOG,
)

# Seconds from a task's own limit to the worker's soft limit, and from that to its hard one.
GRACE_SECONDS = 60.0
# A frame of this many pixels costs a render one frame's budget; a larger one, as many as its pixels make.
BUDGET_FRAME_PIXELS = 1920 * 1080

# Fixed limits (soft; the worker kills the task GRACE_SECONDS later). Planning reads
# every packet of the video once (a couple of minutes for the largest upload on slow
# storage); its hard limit is planning's PLANNING_LEASE (5 minutes), so a planner is
# gone before another delivery may take the job over. Merging and a failed chord's
# callback are a few queries; the watchdog a few per job in flight.
PLANNING_SECONDS = 240.0
MERGE_SECONDS = 300.0
WATCHDOG_SECONDS = 600.0


class LimitExceeded(Exception):
    """A task ran past its `TimeLimit` (found by its own `Deadline`)."""

    def __init__(self, limit: TimeLimit) -> None:
        super().__init__(limit.message())
        self.limit = limit


def _seconds(value: float) -> str:
    """Seconds as the messages write them: whole ones, fractions only below ten."""
    return f"{value:.0f}" if value >= 10 else f"{value:.3g}"


@dataclass(frozen=True)
class TimeLimit:
    """The time a task may take for one job, and how it was reckoned."""

    what: str  # the work, as a message's subject: "the render"
    seconds: float
    formula: str  # the reckoning, with the settings' names and values
    setting: str  # the setting to raise when the limit is too low
    uncapped: float  # what the formula gives (more than ``seconds`` when capped)

    @classmethod
    def of(
        cls, what: str, base: float, per_unit: float, units: float, formula: str, setting: str
    ) -> TimeLimit:
        uncapped = base + per_unit * units
        return cls(what, min(uncapped, LONGEST_TASK_SECONDS), formula, setting, uncapped)

    @property
    def capped(self) -> bool:
        return self.uncapped > self.seconds

    def options(self) -> dict[str, float]:
        """Celery's per-message limits for ``apply_async``: the worker's soft limit
        GRACE_SECONDS after this one, its hard limit (a kill) GRACE_SECONDS after that."""
        return {
            "soft_time_limit": self.seconds + GRACE_SECONDS,
            "time_limit": self.seconds + 2 * GRACE_SECONDS,
        }

    def message(self) -> str:
        """Why the task stopped: which limit, how long, and the setting that raises it."""
        if self.capped:
            return (
                f"{self.what} ran past {_seconds(self.seconds)} s, the longest any task may run "
                f"({self.formula} would allow {_seconds(self.uncapped)} s; RabbitMQ takes back a message "
                f'held longer, docs/operations.md, "Time limits")'
            )
        return (
            f"{self.what} ran past its {_seconds(self.seconds)} s time limit ({self.formula}); "
            f"raise {self.setting}"
        )


class Deadline:
    """A `TimeLimit` counted from now, checked by the task between frames."""

    def __init__(self, limit: TimeLimit) -> None:
        self.limit = limit
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def check(self) -> None:
        """Raises:
        LimitExceeded: the limit has passed."""
        if self.elapsed() > self.limit.seconds:
            raise LimitExceeded(self.limit)


def frame_weight(width: int | None, height: int | None) -> float:
    """How many frames' budgets one frame of ``width`` x ``height`` costs a render:
    1 up to 1920x1080, then in proportion to its pixels."""
    if not width or not height:
        return 1.0
    return max(1.0, width * height / BUDGET_FRAME_PIXELS)


def render_limit(settings: Settings, frames: int | None, width: int | None, height: int | None) -> TimeLimit:
    """An annotated video's limit: RENDER_BASE_SECONDS (reading the video's index before
    the first frame, finishing the file after the last) plus RENDER_SECONDS_PER_FRAME for
    each of the video's ``frames``, weighed by their size (`frame_weight`)."""
    frames = max(0, frames or 0)
    weight = frame_weight(width, height)
    formula = (
        f"RENDER_BASE_SECONDS {_seconds(settings.render_base_seconds)} s + "
        f"RENDER_SECONDS_PER_FRAME {settings.render_seconds_per_frame:g} s for each of {frames} frames"
    )
    if weight > 1:
        formula += f", each counted {weight:.3g} times for its {width}x{height} pixels"
    return TimeLimit.of(
        "the render",
        settings.render_base_seconds,
        settings.render_seconds_per_frame,
        frames * weight,
        formula,
        "RENDER_SECONDS_PER_FRAME",
    )


def tracking_limit(settings: Settings, frames: int | None) -> TimeLimit:
    """A tracking step's limit: TRACK_BASE_SECONDS plus TRACK_SECONDS_PER_FRAME for each
    of the job's analysed ``frames``."""
    frames = max(0, frames or 0)
    return TimeLimit.of(
        "tracking",
        settings.track_base_seconds,
        settings.track_seconds_per_frame,
        frames,
        f"TRACK_BASE_SECONDS {_seconds(settings.track_base_seconds)} s + "
        f"TRACK_SECONDS_PER_FRAME {settings.track_seconds_per_frame:g} s for each of {frames} frames",
        "TRACK_SECONDS_PER_FRAME",
    )


def planning_message() -> str:
    """Why a job whose planning ran past PLANNING_SECONDS failed."""
    return (
        f"planning ran past its {_seconds(PLANNING_SECONDS)} s time limit while reading the video's "
        f'frame index (a fixed limit; is video storage slow? docs/operations.md, "Time limits")'
    )


def webhook_seconds(settings: Settings) -> float:
    """A webhook POST's limit: its connection, answer and the answer's first bytes, each
    allowed WEBHOOK_TIMEOUT_SECONDS, and a margin."""
    return 4 * settings.webhook_timeout_seconds + GRACE_SECONDS


def _soft_hard(seconds: float) -> dict[str, float]:
    soft = min(seconds, LONGEST_TASK_SECONDS - GRACE_SECONDS)
    return {"soft_time_limit": soft, "time_limit": soft + GRACE_SECONDS}


def task_limits(settings: Settings) -> dict[str, dict[str, Any]]:
    """The fixed limits, by task name, as Celery task annotations.

    The others have none here: ``render_video`` and ``track_objects`` get theirs on each
    message (`render_limit`, `tracking_limit`), ``download_video`` has none (it is judged
    by progress), and Celery's own ``celery.chord_unlock`` polls briefly and retries.
    """
    return {
        DETECT_FRAMES: _soft_hard(settings.chunk_time_limit),
        PROCESS_VIDEO: _soft_hard(PLANNING_SECONDS),
        MERGE_CHUNKS: _soft_hard(MERGE_SECONDS),
        CHUNK_FAILED: _soft_hard(MERGE_SECONDS),
        DELIVER_WEBHOOK: _soft_hard(webhook_seconds(settings)),
        WATCHDOG: _soft_hard(WATCHDOG_SECONDS),
    }
