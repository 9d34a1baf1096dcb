"""docs/tasks.md is what scripts/make_docs.py writes from the code."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_tasks_md_is_current():
    spec = importlib.util.spec_from_file_location("make_docs", ROOT / "scripts" / "make_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "tasks.md").read_text(encoding="utf8") == module.render(), (
        "docs/tasks.md is stale: run python scripts/make_docs.py")
