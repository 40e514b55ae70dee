"""The documentation's links hold: every relative link of README.md and docs/ reaches a file,
and its #anchor a heading there (as GitHub spells them); every raw result in docs/results/ is
linked from a sitting's file, and every sitting's file from the report's history."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RESULTS = ROOT / "docs" / "results"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def prose(path: Path) -> str:
    """The file without its fenced code blocks (a `#` there is a comment, a `](` code)."""
    return re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of `path`: lower case, punctuation dropped, spaces
    as hyphens, a repeated one numbered."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    for heading in re.findall(r"^#+ (.+)$", prose(path), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = counts[slug] = counts.get(slug, -1) + 1
        found.add(f"{slug}-{count}" if count else slug)
    return found


def links(path: Path) -> list[str]:
    return [target for target in LINK.findall(prose(path)) if not re.match(r"[a-z]+:", target)]


def test_every_relative_link_reaches_its_file_and_heading() -> None:
    broken = []
    for doc in DOCS:
        for target in links(doc):
            file, _, anchor = target.partition("#")
            where = (doc.parent / file).resolve() if file else doc
            if not where.exists() or (anchor and where.is_file() and anchor not in anchors(where)):
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_result_is_linked_from_its_sitting_and_every_sitting_from_the_report() -> None:
    linked = {(RESULTS / target).resolve() for doc in RESULTS.glob("*.md") for target in links(doc)}
    raw = sorted(path.name for path in RESULTS.glob("*.jsonl") if path.resolve() not in linked)
    assert not raw, f"raw results no sitting's file links: {raw}"
    report = ROOT / "docs" / "benchmarks.md"
    listed = {(report.parent / target.partition("#")[0]).resolve() for target in links(report)}
    sittings = sorted(path.name for path in RESULTS.glob("*.md") if path.resolve() not in listed)
    assert not sittings, f"files of docs/results/ the report's history does not list: {sittings}"
