"""The words of syncing with an EHR, defined once: link, write and push states.

Members are ``str``, so they compare equal to the values stored in the database (the columns
stay plain strings) and serialize as those values in JSON.
"""

from __future__ import annotations

from careloop.services.common.vocabulary import Vocabulary


class LinkState(Vocabulary):
    """Whether a careloop patient is known as one EHR Patient; careloop never guesses."""

    LINKED = "linked"
    UNLINKED = "unlinked"
    """No EHR Patient matched."""
    AMBIGUOUS = "ambiguous"
    """Several EHR Patients matched."""


class LinkMethod(Vocabulary):
    """How a link was made."""

    IDENTIFIER = "identifier"
    MANUAL = "manual"


class WriteState(Vocabulary):
    """Where one careloop resource stands in one EHR."""

    WRITTEN = "written"
    WAITING = "waiting"
    """The patient is not linked yet."""
    FAILED = "failed"


class PushState(Vocabulary):
    """What one push did (the ``ehr.push`` task's result)."""

    WRITTEN = "written"
    WAITING = "waiting"
    NOTHING = "nothing"
    """Everything was written already."""
    BLOCKED = "blocked"
    """Egress refused the EHR's address."""
    REJECTED = "rejected"
    """The EHR refused the write or the token request (kept as an EhrFailure)."""
    INACTIVE = "inactive"
    """The connection is gone or switched off."""
