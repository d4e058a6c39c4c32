"""mypy plugin: stop at once when a code folder is read under its bare name.

``mypy services/app.py`` would check the file as module ``services.app``: none of the
``careloop.*`` overrides apply and ``careloop.services.app`` is a different module to mypy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mypy.nodes import MypyFile
from mypy.plugin import Plugin, ReportConfigContext

ROOT = Path(__file__).resolve().parent.parent
CODE_FOLDERS = ("services", "fhir", "integrations", "workflows")


def _refuse_bare_name(module: str, path: str) -> None:
    # A folder without __init__.py (the namespace `fhir`, shared with fhir.resources) has no code.
    if module == "careloop" or module.startswith("careloop.") or not path.endswith(".py"):
        return
    real = Path(path).resolve()
    if not any(real.is_relative_to(ROOT / folder) for folder in CODE_FOLDERS):
        return
    relative = real.relative_to(ROOT)
    raise SystemExit(
        f"mypy: {relative} was read as module {module!r}; the code folders are only "
        f"careloop.<folder>: run `mypy careloop/{relative}` or `mypy careloop` (README, Layout)"
    )


class LayoutPlugin(Plugin):
    """Refuses modules of the code folders whose name does not start with ``careloop.``."""

    def get_additional_deps(self, file: MypyFile) -> list[tuple[int, str, int]]:
        _refuse_bare_name(file.fullname, file.path)
        return []

    def report_config_data(self, ctx: ReportConfigContext) -> Any:
        # Called instead of parsing when the module comes from mypy's cache.
        _refuse_bare_name(ctx.id, ctx.path)
        return None


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point for this plugin."""
    return LayoutPlugin
