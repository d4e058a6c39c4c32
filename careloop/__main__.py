"""``python -m careloop``: the same as the ``careloop`` command."""

from careloop.workflows.cli.main import main

main()
