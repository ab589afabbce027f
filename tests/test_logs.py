import io
import json
import logging
from types import SimpleNamespace

from detector.observability import logs


def test_json_lines_carry_the_job_and_chunk_of_the_running_task(monkeypatch):
    task = SimpleNamespace(
        name="detector.detect_frames", request=SimpleNamespace(id="t-1", args=["a" * 32, 3, 0, 10], kwargs={})
    )
    monkeypatch.setattr("celery.current_task", task)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.TaskContextFilter())
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("detector.test.logs")
    logger.addHandler(handler)
    try:
        logger.warning("chunk done: %d frames", 10)
    finally:
        logger.removeHandler(handler)
    entry = json.loads(stream.getvalue())
    assert entry["message"] == "chunk done: 10 frames"
    assert entry["job_id"] == "a" * 32 and entry["chunk"] == 3
    assert entry["level"] == "WARNING"


def test_no_task_no_context(monkeypatch):
    monkeypatch.setattr("celery.current_task", None)
    assert logs.task_context() == {}
