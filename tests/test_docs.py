"""The documentation holds: every relative link of README.md and docs/ reaches a file, and
its #anchor a heading there (as GitHub spells them); every raw result in docs/results/ is
linked from a sitting's file, and every sitting's file from the report's history; the site
builds with `mkdocs build --strict` (a broken link, anchor or reference fails), and its
reference documents every public name. The pages' code blocks run in tests/test_readme.py."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import flowstone
import flowstone.testing

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


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built into a temporary directory (`site/` is the developer's)."""
    if importlib.util.find_spec("mkdocs") is None and os.environ.get("CI") != "true":
        pytest.skip("the docs extra is not installed: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{built.stdout}\n{built.stderr}"
    return out


def ids(site: Path, under: str) -> set[str]:
    html = "".join(page.read_text() for page in (site / under).rglob("*.html"))
    return set(re.findall(r'id="([^"]+)"', html))


@pytest.mark.timeout(300)
def test_the_reference_documents_every_public_name(site: Path) -> None:
    documented = ids(site, "reference")
    names = [f"flowstone.{name}" for name in flowstone.__all__]
    names += [f"flowstone.testing.{name}" for name in flowstone.testing.__all__]
    assert [name for name in names if name not in documented] == []


def test_every_public_name_has_a_reference_entry() -> None:
    """Without building: each name of `flowstone.__all__` has its `::: flowstone.NAME`."""
    text = "".join(page.read_text() for page in (ROOT / "docs" / "reference").glob("*.md"))
    entries = set(re.findall(r"^::: (\S+)$", text, re.MULTILINE))
    missing = [name for name in flowstone.__all__ if f"flowstone.{name}" not in entries]
    assert missing == [], "add them to a page of docs/reference/"


def test_the_built_site_is_not_committed() -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", "site/"], cwd=ROOT, check=False)
    assert ignored.returncode == 0, "site/ is in .gitignore"
