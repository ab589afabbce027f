"""The embedded broker never hands a consumer a half-written message.

kombu's stock filesystem transport fails this test (the consumer reads files
the producer has created but not yet written: JSONDecodeError).
"""

import multiprocessing
import uuid

from kombu import Connection

from detector.config import Settings, load_config
from detector.pipeline.celery_app import celery_config
from tests.conftest import base_config

COUNT, PAD = 400, "x" * 200_000  # big messages widen the window a partial read needs


def _connect(settings: dict) -> Connection:
    return Connection(
        settings["broker_url"],
        transport=settings["broker_transport"],
        transport_options=settings["broker_transport_options"],
    )


def _publish(settings: dict) -> None:
    with _connect(settings) as connection:
        queue = connection.SimpleQueue("stress")
        for i in range(COUNT):
            queue.put({"i": i, "pad": PAD})


def test_concurrent_publish_and_consume_deliver_every_message_whole(tmp_path):
    settings = celery_config(Settings.from_config(load_config(base_config(tmp_path))))
    assert settings["broker_transport"] == "detector.pipeline.filesystem_broker:Transport"
    producer = multiprocessing.get_context("fork").Process(target=_publish, args=(settings,))
    received = []
    with _connect(settings) as connection:
        queue = connection.SimpleQueue("stress")
        producer.start()
        while len(received) < COUNT:
            message = queue.get(timeout=30)
            assert message.payload["pad"] == PAD
            received.append(message.payload["i"])
            message.ack()
    producer.join(30)
    assert producer.exitcode == 0
    assert sorted(received) == list(range(COUNT))


def test_consumers_take_the_highest_priority_first_and_equal_ones_in_order(tmp_path):
    settings = celery_config(Settings.from_config(load_config(base_config(tmp_path))))
    sent = [("a", 0), ("b", 9), ("c", 5), ("d", 9), ("e", None), ("f", 5)]
    # A queue name no other test binds: kombu keeps the bindings a process has
    # declared in memory, for all its connections, and would not write this
    # test's binding into its own broker folder if another test in the same
    # process had bound the same name (its messages would then go nowhere).
    with _connect(settings) as connection:
        queue = connection.SimpleQueue(f"detector.priorities-{uuid.uuid4().hex[:8]}")
        for name, priority in sent:
            queue.put({"name": name}, priority=priority)
        received = []
        for _ in sent:
            message = queue.get(timeout=30)
            received.append(message.payload["name"])
            message.ack()
    assert received == ["b", "d", "c", "f", "a", "e"]


def _send(settings: dict, queue_name: str, names: list[str]) -> None:
    with _connect(settings) as connection:
        queue = connection.SimpleQueue(queue_name)
        for name in names:
            queue.put({"name": name})


def test_messages_keep_their_order_across_a_reboot(tmp_path, monkeypatch):
    from detector.pipeline import filesystem_broker

    settings = celery_config(Settings.from_config(load_config(base_config(tmp_path))))
    queue_name = f"detector.reboot-{uuid.uuid4().hex[:8]}"  # see the test above
    # Sent before the reboot, by another process, and still queued after it.
    before = multiprocessing.get_context("fork").Process(
        target=_send, args=(settings, queue_name, ["a", "b"])
    )
    before.start()
    before.join(30)
    assert before.exitcode == 0
    # After the reboot the clocks start lower: the monotonic one from zero, and the
    # wall clock of a machine whose time was set back.
    monkeypatch.setattr(filesystem_broker, "monotonic_ns", lambda: 5, raising=False)
    monkeypatch.setattr(filesystem_broker, "time_ns", lambda: 7)
    _send(settings, queue_name, ["c", "d"])
    with _connect(settings) as connection:
        queue = connection.SimpleQueue(queue_name)
        received = []
        for _ in range(4):
            message = queue.get(timeout=30)
            received.append(message.payload["name"])
            message.ack()
    assert received == ["a", "b", "c", "d"]
