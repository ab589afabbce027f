"""The embedded broker: kombu's filesystem transport, with atomic message writes.

kombu's own transport creates a message file and then writes it; a consumer
polling the folder can claim the file in between and read it empty, which kills
the worker (JSONDecodeError, seen in the benchmark). Here a message is written
under a name consumers ignore and renamed into the queue when complete.

Consumers take a queue's files in the order of their names, so a message's name
starts with its priority (highest first), then a sequence number: the embedded
broker honours message priorities as RabbitMQ's priority queues do
(detector.runtime.queues.chunk_priority), and keeps equal ones in the order they
were sent. The sequence is kept in a file of the broker's control folder (beside
the exchange tables, out of the queue folder), taken under a lock by every sending
process, and never falls below the wall clock in nanoseconds: it goes on from
where it was after a restart or a reboot (a monotonic clock starts again from zero
at boot, which would put new messages before those still queued), and a clock set
back does not reorder messages either.
"""

from __future__ import annotations

import os
import uuid
from time import time_ns
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.transport.filesystem import LOCK_EX, lock, unlock
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

from detector.runtime.queues import MAX_PRIORITY

# The file holding the last sequence number given, in the control folder (where
# kombu only reads "<exchange>.exchange" files).
SEQUENCE_FILE = "sequence"


def next_sequence(folder: str) -> int:
    """The next message sequence number of the broker whose control folder is
    ``folder``: above every one given before (by any process, before any restart),
    and at least the wall clock's nanoseconds."""
    fd = os.open(os.path.join(folder, SEQUENCE_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    with os.fdopen(fd, "r+b", buffering=0) as f:
        lock(f, LOCK_EX)
        try:
            text = f.read().strip()
            last = int(text) if text.isdigit() else 0
            number = max(last + 1, time_ns())
            f.seek(0)
            f.write(str(number).encode())
            f.truncate()
        finally:
            unlock(f)
    return number


def message_priority(payload: Any) -> int:
    """A message's priority, 0 to MAX_PRIORITY (0 when it has none)."""
    try:
        priority = int((payload.get("properties") or {}).get("priority") or 0)
    except (AttributeError, TypeError, ValueError):
        return 0
    return min(MAX_PRIORITY, max(0, priority))


class Channel(filesystem.Channel):  # type: ignore[misc]
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # Sorted by name: priority first (0 is the highest), then the sequence number,
        # zero-padded, so that equal priorities keep their order.
        rank = MAX_PRIORITY - message_priority(payload)
        try:
            sequence = next_sequence(str(self.control_folder))
        except OSError as exc:
            raise ChannelError(f"Cannot take a message number in {str(self.control_folder)!r}") from exc
        name = f"{rank}-{sequence:020d}_{uuid.uuid4()}.{queue}.msg"
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
