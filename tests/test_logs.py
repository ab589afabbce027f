import io
import json
import logging
import socket
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
    assert entry["node"] == logs.NODE == socket.gethostname()


def test_text_lines_name_the_node(monkeypatch):
    monkeypatch.setattr("celery.current_task", None)
    record = logging.LogRecord("detector.test.logs", logging.INFO, __file__, 1, "hello %s", ("there",), None)
    assert logs.TaskContextFilter().filter(record)
    line = logging.Formatter(logs.TEXT_FORMAT).format(record)
    assert line.endswith(f" {socket.gethostname()} INFO detector.test.logs: hello there")


def test_task_lines_go_through_the_service_s_handler():
    from celery.signals import after_setup_task_logger

    logs.configure_logging("INFO", "text")
    task_logger = logging.getLogger("detector.test.logs.task")
    task_logger.addHandler(logging.NullHandler())  # as Celery's own setup leaves it
    task_logger.propagate = False
    try:
        after_setup_task_logger.send(sender=None, logger=task_logger, loglevel=logging.INFO)
        assert task_logger.handlers == [] and task_logger.propagate
    finally:
        task_logger.propagate = True


def test_no_task_no_context(monkeypatch):
    monkeypatch.setattr("celery.current_task", None)
    assert logs.task_context() == {}


def test_the_access_log_leaves_media_tokens_out(tmp_path):
    from datetime import timedelta

    from gunicorn.config import Config

    from detector.observability.access_log import AccessLogger
    from detector.runtime.processes import api_argv

    argv = api_argv("127.0.0.1", 8000, 1, 30)
    assert argv[argv.index("--logger-class") + 1] == "detector.observability.access_log.AccessLogger"

    token = "eyJ1IjoxLCJqIjoiNGY2YyJ9.Z2xvYg.c2lnbmF0dXJl"
    config = Config()
    config.set("accesslog", str(tmp_path / "access.log"))
    logger = AccessLogger(config)
    response = SimpleNamespace(
        status="206 Partial Content", sent=1024, headers=[("Content-Type", "video/mp4")]
    )
    request = SimpleNamespace(headers=[("RANGE", "bytes=0-1023")])
    for query in (f"media_token={token}", f"x=1&MEDIA%5Ftoken={token}&y=2"):
        environ = {
            "REQUEST_METHOD": "GET",
            "RAW_URI": f"/api/jobs/4f6c/video?{query}",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "PATH_INFO": "/api/jobs/4f6c/video",
            "QUERY_STRING": query,
            "HTTP_REFERER": f"https://detector.example/api/jobs/4f6c/video?{query}",
            "REMOTE_ADDR": "192.0.2.1",
        }
        logger.access(response, request, environ, timedelta(milliseconds=12))
    for handler in logger.access_log.handlers:
        handler.close()
    lines = (tmp_path / "access.log").read_text().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert token not in line
        assert "GET /api/jobs/4f6c/video?" in line and "token=[redacted]" in line and " 206 1024 " in line
    assert "x=1&MEDIA%5Ftoken=[redacted]&y=2" in lines[1]
