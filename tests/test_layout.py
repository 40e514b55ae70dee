"""The tests keep the package's shape: every folder of tests mirrors a package of
`flowstone/` (tests/queue/runtime ↔ flowstone/queue/runtime), except the few that cut across
packages, named here — so a reader finds a module's tests where the module is."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
PACKAGE = ROOT / "flowstone"

# Folders of tests with no package of their own: real worker processes, across every layer.
ACROSS = {"processes"}


def folders_with_tests() -> list[Path]:
    """The folders holding tests or fixtures (helper folders such as an app a test loads
    hold neither and are not checked)."""
    return sorted(
        folder.relative_to(TESTS)
        for folder in TESTS.rglob("*")
        if folder.is_dir() and (any(folder.glob("test_*.py")) or (folder / "conftest.py").exists())
    )


def test_every_test_folder_mirrors_a_package() -> None:
    strays = [
        f"tests/{folder}"
        for folder in folders_with_tests()
        if not (PACKAGE / folder / "__init__.py").exists() and folder.parts[0] not in ACROSS
    ]
    assert not strays, f"{', '.join(strays)} mirror no package of flowstone/: move them, or add to ACROSS"


def test_the_exceptions_still_exist() -> None:
    missing = sorted(name for name in ACROSS if not (TESTS / name).is_dir())
    assert not missing, f"ACROSS names folders that are gone: {missing}"
