"""The base of careloop's vocabularies: string enums whose members equal their stored values."""

from __future__ import annotations

from enum import StrEnum


class Vocabulary(StrEnum):
    """A closed set of names; a member is a ``str`` equal to the value stored or sent."""

    @classmethod
    def has(cls, value: object) -> bool:
        """Whether ``value`` is one of the names (``in`` on the class needs Python 3.12)."""
        return isinstance(value, str) and value in cls._value2member_map_
