"""Celery app, tasks and threshold rules."""

if __name__ != "careloop.workflows":
    # With the repository root on sys.path this folder is also importable as `workflows`: every
    # module would then load twice under two names (tables defined twice, isinstance failing).
    raise ImportError(
        f"import careloop.workflows, not {__name__}: the code folders load only through the "
        "careloop package, never from the repository root on sys.path (README, Layout)"
    )
