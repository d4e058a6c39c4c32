"""``python -m careloop.services.cli``: the same as the ``careloop`` command."""

from careloop.services.cli.main import main

main()
