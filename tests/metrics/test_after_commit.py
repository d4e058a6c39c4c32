"""A count waits for its transaction: committed work counts once, rolled-back work (the whole
transaction or a savepoint of it) never."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from careloop.services.metrics.after_commit import after_commit


def test_counts_wait_for_the_commit_and_skip_what_rolled_back(metrics_engine: Engine) -> None:
    seen: list[str] = []
    with Session(metrics_engine) as session:
        session.execute(text("SELECT 1"))
        after_commit(session, lambda: seen.append("outer"))
        with session.begin_nested():
            after_commit(session, lambda: seen.append("kept savepoint"))
        with pytest.raises(RuntimeError):
            with session.begin_nested():
                after_commit(session, lambda: seen.append("dropped savepoint"))
                with session.begin_nested():
                    after_commit(session, lambda: seen.append("inside the dropped one"))
                raise RuntimeError("the entry fails")
        assert seen == []  # nothing before the commit
        session.commit()
        assert seen == ["outer", "kept savepoint"]
        session.execute(text("SELECT 1"))
        after_commit(session, lambda: seen.append("rolled back"))
        session.rollback()
        session.commit()
    assert seen == ["outer", "kept savepoint"]
