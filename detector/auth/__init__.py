"""Users, password hashing and JWT handling (token revocation included)."""
