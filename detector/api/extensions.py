"""Extensions created unbound here and bound to the app in `create_app`."""

from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from detector.auth import ratelimit  # noqa: F401  registers the database:// storage and its table
from detector.db import db

jwt = JWTManager()
# Only the routes that ask for it are limited (login); the limit is LOGIN_RATE_LIMIT.
# Its counters are shared by all API processes (detector.auth.ratelimit).
limiter = Limiter(key_func=get_remote_address, default_limits=[])

__all__ = ["db", "jwt", "limiter"]
