"""Plain ``--help`` for careloop's commands (and the hook that audits each of them).

Typer shows a type for every parameter, flags included (``--help <bool>``, though a flag takes
no value), and writes required arguments as ``{name}`` in the usage line. careloop's help shows
flags bare and arguments the usual way (``careloop clients create [OPTIONS] NAME``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from careloop.services.cli.audited import audited

F = TypeVar("F", bound=Callable[..., Any])


def _bare_flags(command: Any, ctx: Any) -> None:
    for param in command.get_params(ctx):
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""  # shown in the type column instead of "<bool>"


class PlainHelpCommand(TyperCommand):
    """A Typer command with bare flags and conventional argument names in its help."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _bare_flags(self, ctx)
        super().format_help(ctx, formatter)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.metavar or (param.name or "").upper()
                pieces.append(name if param.required else f"[{name}]")
        return pieces


class PlainHelpGroup(TyperGroup):
    """A Typer group with bare flags in its help."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _bare_flags(self, ctx)
        super().format_help(ctx, formatter)


class PlainTyper(typer.Typer):
    """A Typer app whose groups and commands all use the plain help."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", PlainHelpGroup)
        super().__init__(**kwargs)
        self.audit_name = ""
        """This group's name in audit entries (``ehr``), set as it is added to another."""

    def add_typer(self, typer_instance: typer.Typer, *args: Any, **kwargs: Any) -> None:
        """Add a group of commands (see ``typer.Typer.add_typer``)."""
        super().add_typer(typer_instance, *args, **kwargs)
        if isinstance(typer_instance, PlainTyper) and kwargs.get("name"):
            typer_instance.audit_name = ".".join(filter(None, [self.audit_name, kwargs["name"]]))

    def command(self, *args: Any, audit: bool = True, **kwargs: Any) -> Callable[[F], F]:
        """Register a command (see ``typer.Typer.command``) with the plain help, each run of
        it audited (``careloop.services.cli.audited``) unless ``audit`` is False."""
        kwargs.setdefault("cls", PlainHelpCommand)
        register: Callable[[F], F] = super().command(*args, **kwargs)
        if not audit:
            return register

        def register_audited(callback: F) -> F:
            command = args[0] if args else kwargs.get("name") or callback.__name__
            register(audited(callback, lambda: ".".join(filter(None, [self.audit_name, command]))))
            return callback  # called from Python (tests, other commands): not audited again

        return register_audited
