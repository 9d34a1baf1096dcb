"""Run by tests/test_ci_mode.py (not collected by the suite: no test_ prefix)."""

import pytest


def test_skips():
    pytest.skip("an extra is missing")


@pytest.mark.may_skip
def test_skips_for_hardware():
    pytest.skip("no GPU here")
