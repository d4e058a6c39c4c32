"""Client secrets, stored only as salted scrypt hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import lru_cache

_N, _R, _P = 2**14, 8, 1


def _scrypt(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)


def hash_secret(secret: str) -> str:
    """A salted scrypt hash of ``secret``."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(secret, salt)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def verify_secret(secret: str, stored: str) -> bool:
    """Whether ``secret`` matches the stored hash (constant time)."""
    try:
        scheme, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = _scrypt(secret, base64.b64decode(salt_b64))
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


@lru_cache(maxsize=1)
def dummy_hash() -> str:
    """A hash no secret matches, verified against for unknown clients so they take as long."""
    return hash_secret(secrets.token_urlsafe(32))
