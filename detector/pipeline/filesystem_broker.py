"""The embedded broker: kombu's filesystem transport, with atomic message writes.

kombu's own transport creates a message file and then writes it; a consumer
polling the folder can claim the file in between and read it empty, which kills
the worker (JSONDecodeError, seen in the benchmark). Here a message is written
under a name consumers ignore and renamed into the queue when complete.

Consumers take a queue's files in the order of their names, so a message's name
starts with its priority (highest first), then its time: the embedded broker
honours message priorities as RabbitMQ's priority queues do
(detector.runtime.queues.chunk_priority).
"""

from __future__ import annotations

import os
import uuid
from time import monotonic_ns
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

from detector.runtime.queues import MAX_PRIORITY


def message_priority(payload: Any) -> int:
    """A message's priority, 0 to MAX_PRIORITY (0 when it has none)."""
    try:
        priority = int((payload.get("properties") or {}).get("priority") or 0)
    except (AttributeError, TypeError, ValueError):
        return 0
    return min(MAX_PRIORITY, max(0, priority))


class Channel(filesystem.Channel):  # type: ignore[misc]
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # Sorted by name: priority first (0 is the highest), then the machine's
        # monotonic clock in nanoseconds, zero-padded, so that equal priorities keep their order.
        rank = MAX_PRIORITY - message_priority(payload)
        name = f"{rank}-{monotonic_ns():020d}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # No dot in the name: consumers only look at "<id>.<queue>.msg" files.
        partial = os.path.join(self.data_folder_out, f"partial-{uuid.uuid4().hex}")
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):  # type: ignore[misc]
    Channel = Channel
