"""The administrative half of the ``careloop`` command line (see ``careloop.workflows.cli``)."""
