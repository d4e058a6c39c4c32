"""The ``careloop`` command line."""

from careloop.services.cli.main import app, main

__all__ = ["app", "main"]
