"""Password hashing with scrypt (Werkzeug), slow on purpose."""

from __future__ import annotations

from werkzeug.security import check_password_hash, generate_password_hash

# Checked when the user does not exist, so that an unknown username costs as
# much time as a wrong password and login timing tells nobody which names exist.
_DUMMY_HASH = generate_password_hash("not a real password")


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if password_hash is None:
        check_password_hash(_DUMMY_HASH, password)
        return False
    return check_password_hash(password_hash, password)
