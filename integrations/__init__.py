"""Notification channels and EHR clients."""

if __name__ != "careloop.integrations":
    # With the repository root on sys.path this folder is also importable as `integrations`: every
    # module would then load twice under two names (tables defined twice, isinstance failing).
    raise ImportError(
        f"import careloop.integrations, not {__name__}: the code folders load only through the "
        "careloop package, never from the repository root on sys.path (README, Layout)"
    )
