"""docs/tasks.md is what scripts/make_docs.py writes from the code; no link of the README or
docs/ is dead."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_tasks_md_is_current():
    spec = importlib.util.spec_from_file_location("make_docs", ROOT / "scripts" / "make_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "tasks.md").read_text(encoding="utf8") == module.render(), (
        "docs/tasks.md is stale: run python scripts/make_docs.py")


LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", flags=re.S | re.M)


def _headings(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    slugs = set()
    for line in FENCE.sub("", path.read_text(encoding="utf8")).splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            title = match.group(1).strip().lower()
            slugs.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return slugs


def test_every_relative_link_of_the_docs_resolves_inside_the_repository():
    bad = []
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        prose = re.sub(r"`[^`\n]*`", "", FENCE.sub("", md.read_text(encoding="utf8")))
        for target in LINK.findall(prose):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (md.parent / path).resolve() if path else md
            if not dest.is_relative_to(ROOT) or not dest.is_file():
                bad.append(f"{md.name}: {target} (no such file in the repository)")
            elif anchor and dest.suffix == ".md" and anchor not in _headings(dest):
                bad.append(f"{md.name}: {target} (no heading #{anchor})")
    assert not bad, "dead links:\n" + "\n".join(bad)
