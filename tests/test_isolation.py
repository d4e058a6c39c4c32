"""The test suite never reaches ./data, where `make run` keeps its database and broker."""

from __future__ import annotations

from pathlib import Path

from careloop.services.db import get_engine
from careloop.services.settings import get_settings

REPO_DATA = (Path(__file__).parent.parent / "data").resolve()


def test_process_settings_use_a_scratch_data_dir(scratch_data_dir: Path) -> None:
    data_dir = get_settings().data_dir.resolve()
    assert data_dir == scratch_data_dir.resolve()
    assert not data_dir.is_relative_to(REPO_DATA)


def test_default_broker_and_database_are_outside_data(scratch_data_dir: Path) -> None:
    # What the Celery app configures itself with on import, and what the CLI commands use.
    broker = get_settings().resolved_broker_url
    assert str(scratch_data_dir.resolve()) in broker and str(REPO_DATA) not in broker
    database = str(get_engine().url)
    assert str(scratch_data_dir.resolve()) in database and str(REPO_DATA) not in database
