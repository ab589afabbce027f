"""The API's access log (gunicorn's), with media tokens left out.

A ``<video>`` element cannot send a header, so its URL carries a media token
(``?media_token=…``, detector.api.media): gunicorn's access log would write it
out with the request line, and anyone who reads the logs could play the video
until the token expires. `AccessLogger` (``gunicorn --logger-class``) writes
``media_token=[redacted]`` instead, in every field of the line (the request
line, the query string, the Referer, any header or environ variable a custom
format names).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from gunicorn.glogging import Logger

# The parameter's name as sent, or with its "_" percent-encoded (Flask decodes both).
_MEDIA_TOKEN = re.compile(r"(media(?:_|%5f)token=)[^&\s\"]*", re.IGNORECASE)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with the value of every media_token parameter replaced by [redacted]."""
    return _MEDIA_TOKEN.sub(rf"\g<1>{REDACTED}", text)


class AccessLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, whose access log lines carry no media token."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        return {key: redact(value) if isinstance(value, str) else value for key, value in atoms.items()}
