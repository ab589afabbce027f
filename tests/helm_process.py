"""Helm's engine (helm-python-sdk) in a process of its own, for tests/test_kubernetes.py.

helm-python-sdk loads Helm's Go SDK, with its Go runtime, into the process that
imports it, and that runtime crashed the test process (a segmentation fault in
the first Helm call) once OpenVINO's and LiteRT's threads had run in it. So the
tests never import it themselves: they send each render or lint to this
module's ``serve`` loop in a child process, a JSON request a line, and read the
JSON answer a line, or the error's message.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class HelmError(Exception):
    """Helm refused the chart or its values; the message is Helm's."""


class HelmProcess:
    """A child process running `serve`; started on the first request."""

    def __init__(self) -> None:
        self._child: subprocess.Popen[str] | None = None

    def request(self, op: str, **args: Any) -> Any:
        """Run ``op`` (``render`` or ``lint``) with ``args`` in the child; its answer.

        Raises:
            HelmError: Helm raised; its message.
            RuntimeError: the child died.
        """
        if self._child is None or self._child.poll() is not None:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "tests.helm_process"],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        assert self._child.stdin is not None and self._child.stdout is not None
        self._child.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
        self._child.stdin.flush()
        line = self._child.stdout.readline()
        if not line:
            raise RuntimeError(f"the Helm process ended (status {self._child.wait()})")
        answer = json.loads(line)
        if "error" in answer:
            raise HelmError(answer["error"])
        return answer["result"]


def _render(chart: str, values: dict[str, Any], name: str, namespace: str) -> dict[str, str]:
    import helm_python

    with helm_python.Chart.load(chart) as loaded:
        return dict(loaded.render(values, name=name, namespace=namespace, is_install=True))


def _lint(chart: str, values: dict[str, Any]) -> Any:
    import helm_python

    return helm_python.lint(chart, values, strict=True)


def serve() -> None:
    """Answer requests from standard input until it closes."""
    ops = {"render": _render, "lint": _lint}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = {"result": ops[request["op"]](**request["args"])}
        except Exception as exc:  # handed back to the test
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
