"""The documentation site builds with `mkdocs build --strict` (a broken link, anchor or
reference fails), and its reference documents every public name. Its code blocks run in
tests/test_readme.py."""

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


def anchors(site: Path, under: str) -> set[str]:
    html = "".join(page.read_text() for page in (site / under).rglob("*.html"))
    return set(re.findall(r'id="([^"]+)"', html))


@pytest.mark.timeout(300)
def test_the_reference_documents_every_public_name(site: Path) -> None:
    documented = anchors(site, "reference")
    names = [f"flowstone.{name}" for name in flowstone.__all__]
    names += [f"flowstone.testing.{name}" for name in flowstone.testing.__all__]
    assert [name for name in names if name not in documented] == []


def test_every_public_name_has_a_reference_entry() -> None:
    """Without building: each name of `flowstone.__all__` has its `::: flowstone.NAME`."""
    text = "".join(page.read_text() for page in (ROOT / "docs" / "reference").glob("*.md"))
    entries = set(re.findall(r"^::: (\S+)$", text, re.MULTILINE))
    missing = [name for name in flowstone.__all__ if f"flowstone.{name}" not in entries]
    assert missing == [], "add them to a page of docs/reference/"


def test_the_readme_links_to_pages_that_exist() -> None:
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\((?!https?://)([^)#]+)(?:#[^)]*)?\)", text)
    assert targets, "the README links into the docs"
    assert [target for target in targets if not (ROOT / target).exists()] == []


def test_the_built_site_is_not_committed() -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", "site/"], cwd=ROOT, check=False)
    assert ignored.returncode == 0, "site/ is in .gitignore"
