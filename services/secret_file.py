"""The dev secret kept in the data directory: created once, race-free, readable by its owner only.

Every process of one careloop (``serve``'s uvicorn workers, the embedded worker and beat) reads
the same file, so they all sign and encrypt with the same secret. The file is written in full
under a temporary name and then hard-linked into place: ``link`` fails if the name exists, so
of several processes starting together exactly one wins and the others read its complete file.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from pathlib import Path

MIN_LENGTH = 32


class SecretFileError(Exception):
    """The secret file cannot be used; the message says what to do."""


def _read(path: Path) -> str:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretFileError(
            f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); chmod 600 it"
        )
    value = path.read_text().strip()
    if len(value) < MIN_LENGTH:
        raise SecretFileError(
            f"{path} holds no usable secret (under {MIN_LENGTH} characters); delete it to have "
            "a new one generated (tokens and stored keys made with the old one stop working)"
        )
    return value


def load_or_create_secret(path: Path) -> str:
    """The secret in ``path``, generated (256 random bits, mode 0600) if the file is missing."""
    if path.exists():
        return _read(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secret_key.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process won the race; its file is complete, read it
    finally:
        os.unlink(temporary)
    return _read(path)
