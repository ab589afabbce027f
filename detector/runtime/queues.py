"""The queues the service's workers consume, and the name of each model's queue.

Each detection model of a deployment (detector.detection.catalog) has a queue
of its own, ``detector.<model name>``, so that a node can be dedicated to one
model (``detector worker -Q detector --model accurate``). A deployment that
declares no models has one, named ``default``.

This module imports nothing else from ``detector``.
"""

from __future__ import annotations

PROCESSOR_QUEUE = "processor"
DETECTOR_QUEUE = "detector"
RENDER_QUEUE = "render"

#: The queues a worker can be started for; ``detector`` means "the queues of its models".
QUEUES = (PROCESSOR_QUEUE, DETECTOR_QUEUE, RENDER_QUEUE)

#: The model's name when a deployment declares none (DETECTOR_MODELS unset).
IMPLICIT_MODEL = "default"

#: Priorities of the model queues (RabbitMQ ``x-max-priority``): 0 (lowest) to this.
MAX_PRIORITY = 9


def model_queue(model: str) -> str:
    """The queue the chunks of a job for ``model`` go to."""
    return f"{DETECTOR_QUEUE}.{model}"


def chunk_priority(chunk_index: int) -> int:
    """The priority of a job's chunk ``chunk_index`` (0-based): MAX_PRIORITY for its
    first chunk, one less each time the index doubles, 0 from chunk 2**MAX_PRIORITY - 1 on.

    Detectors take the highest priority waiting first, so a job's first chunks
    go before another job's later ones: a one-chunk job submitted behind a
    300-chunk job waits for the chunks already running, not for the 300
    (docs/architecture.md, "The order of the work").
    """
    return max(0, MAX_PRIORITY - (chunk_index + 1).bit_length() + 1)
