"""Registering users, checking and changing their passwords, signing them out everywhere."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from detector.auth.passwords import hash_password, verify_password
from detector.auth.tokens import revoke_all
from detector.config import current_settings
from detector.db import db
from detector.models import User
from detector.services.errors import Conflict, Forbidden, InvalidInput, NotFound

USERNAME = re.compile(r"[A-Za-z0-9_.-]{3,64}")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


def _check_password(password: object, field: str = "password") -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput(f"{field} must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def register(username: str, password: str) -> User:
    """A new account.

    Raises:
        Forbidden: registration is closed here (REGISTRATION_OPEN is false).
        InvalidInput: a bad username or password.
        Conflict: the username is taken.
    """
    if not current_settings().registration_open:
        raise Forbidden("registration is closed on this service; ask its operator for an account")
    return create_user(username, password)


def create_user(username: str, password: str) -> User:
    """A new account, whether registration is open or not (the operator's `detector user add`).

    Raises:
        InvalidInput: a bad username or password.
        Conflict: the username is taken.
    """
    # fullmatch: a pattern's "$" would let a trailing newline through.
    if not isinstance(username, str) or not USERNAME.fullmatch(username):
        raise InvalidInput("username must be 3-64 letters, digits, '.', '_' or '-'")
    _check_password(password)
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


def change_password(user_id: int, current_password: object, new_password: object) -> None:
    """Set a new password and revoke every token and session of the user (all in one commit).

    Raises:
        InvalidInput: a new password that is not 8 to 1024 characters.
        Forbidden: ``current_password`` is wrong.
    """
    new = _check_password(new_password, "new_password")
    if not isinstance(current_password, str):
        raise InvalidInput("current_password is a required string")
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    if not verify_password(user.password_hash, current_password):
        raise Forbidden("the current password is wrong")
    user.password_hash = hash_password(new)
    revoke_all(user_id)
    db.session.commit()


def sign_out_everywhere(user_id: int) -> None:
    """Revoke every token and session of the user (API keys stay: they are revoked one by one)."""
    revoke_all(user_id)
    db.session.commit()
