"""pytest configuration and the fixtures tests share.

Importing this file puts tests/ on sys.path, so every test module, tests/learning/ included,
can ``import helpers`` (plain functions called with arguments). Fixtures that build a test's
surroundings live here.
"""

from __future__ import annotations

import os

import pytest
from helpers import Orion, close_warm_servers
from hypothesis import settings

#: .ci/run sets RLTASKS_CI=1: there a skipped test is a broken promise (a missing extra, a
#: fixture that could not build its surroundings) and fails, except where the test is marked
#: ``may_skip`` (hardware this machine lacks, such as a GPU).
STRICT = os.environ.get("RLTASKS_CI") == "1"

# Same examples on every run (a failure reproduces); HYPOTHESIS_PROFILE=explore searches anew.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    """Under pytest-xdist ``--dist loadgroup`` (scripts/test.sh), the tests of a module that
    share one of its module-scoped fixtures (a trained run, a hunt) run on one worker, so the
    fixture is built once, not once per worker. A test that already names a group keeps it.
    Tests marked ``slow`` (the learning tests) are collected first."""
    for item in items:
        module = getattr(item, "module", None)
        info = getattr(item, "_fixtureinfo", None)
        if module is None or info is None or item.get_closest_marker("xdist_group"):
            continue
        if any(d.scope in ("module", "class") and getattr(d.func, "__module__", None)
               == module.__name__ for defs in info.name2fixturedefs.values() for d in defs):
            item.add_marker(pytest.mark.xdist_group(f"module:{module.__name__}"))
    # the long learning tests first, so that the short ones fill both workers at the end
    # instead of one worker finishing a 5-minute run alone
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI, a skip outside ``may_skip`` tests becomes a failure naming its reason."""
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and item.get_closest_marker("may_skip") is None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (RLTASKS_CI=1), which hides a promise: {reason}"


@pytest.fixture(scope="session", autouse=True)
def _warm_servers():
    """The warm servers this pytest process starts (``helpers.warm``) stop with it."""
    yield
    close_warm_servers()


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
