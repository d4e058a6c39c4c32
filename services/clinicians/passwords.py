"""Clinicians' passwords, stored only as argon2id hashes (pwdlib)."""

from __future__ import annotations

from functools import lru_cache

from pwdlib import PasswordHash
from pwdlib.exceptions import PwdlibError
from pwdlib.hashers.argon2 import Argon2Hasher

MAX_PASSWORD = 1024
"""Characters; a longer one is refused before hashing (hashing is deliberately slow)."""
MIN_PASSWORD = 12

_HASHER = PasswordHash((Argon2Hasher(),))


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (salted, pwdlib's recommended parameters)."""
    return _HASHER.hash(password)


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored``; with no hash, a dummy one is verified.

    Verifying the dummy makes an unknown email (or an account without a password) take as long
    as a wrong password, so timing does not tell whether the email exists.
    """
    try:
        matched = _HASHER.verify(password, stored or _dummy_hash())
    except (PwdlibError, ValueError):
        return False
    return matched and stored is not None


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password("no password matches this dummy: careloop")
