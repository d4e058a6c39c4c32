"""FastAPI app: API routes, domain logic and persistence."""

if __name__ != "careloop.services":
    # With the repository root on sys.path this folder is also importable as `services`: every
    # module would then load twice under two names (tables defined twice, isinstance failing).
    raise ImportError(
        f"import careloop.services, not {__name__}: the code folders load only through the "
        "careloop package, never from the repository root on sys.path (README, Layout)"
    )
