"""Registering users and checking their passwords."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from detector.auth.passwords import hash_password, verify_password
from detector.db import db
from detector.models import User
from detector.services.errors import Conflict, InvalidInput

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,64}$")
MIN_PASSWORD = 8


def register(username: str, password: str) -> User:
    if not isinstance(username, str) or not USERNAME.match(username):
        raise InvalidInput("username must be 3-64 letters, digits, '.', '_' or '-'")
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= 1024:
        raise InvalidInput(f"password must be {MIN_PASSWORD} to 1024 characters")
    user = User(username=username, password_hash=hash_password(password))
    session = db.session
    session.add(user)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict("that username is taken") from None
    return user


def authenticate(username: str, password: str) -> User | None:
    """The user, if the password is right; None for a wrong password or unknown user alike."""
    if not isinstance(username, str) or not isinstance(password, str):
        return None
    user = db.session.scalar(select(User).where(User.username == username))
    if verify_password(user.password_hash if user else None, password):
        return user
    return None
