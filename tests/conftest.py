"""pytest configuration and the fixtures tests share.

Importing this file puts tests/ on sys.path, so every test module, tests/learning/ included,
can ``import helpers`` (plain functions called with arguments). Fixtures that build a test's
surroundings live here.
"""

from __future__ import annotations

import os

import pytest
from helpers import Orion


@pytest.fixture
def orion(tmp_path, monkeypatch) -> Orion:
    """The test's own Orion database, ``tmp_path/db.pkl``: this process's environment points
    at it (``ORION_DB_TYPE=pickleddb``, ``ORION_DB_ADDRESS``, any other ``ORION_*`` variable
    removed), and ``orion.env`` is the environment for Orion processes. No test touches the
    user's database."""
    for key in [k for k in os.environ if k.startswith("ORION_")]:
        monkeypatch.delenv(key)
    db = Orion(tmp_path)
    for key, value in db.vars.items():
        monkeypatch.setenv(key, value)
    return db
