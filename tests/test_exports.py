"""The public names are written once, in each package's literal `__all__`: every name there
imports, and is the very object the package's static imports (the ones type checkers read,
under TYPE_CHECKING in the lazy packages) say; the lazy packages export nothing else and
import a name's home only when it is used."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

# Package → the names of its `__all__` that are not imported (defined in the package itself).
PACKAGES = {
    "flowstone": {"__version__"},
    "flowstone.queue": set(),
    "flowstone.testing": set(),
    "flowstone.contrib.django": {"fs"},
}
NOT_EXPORTS = (None, "__future__", "typing", "flowstone._lazy")  # what a package imports for itself


def static_imports(package: str) -> dict[str, tuple[str, str]]:
    """Name → (module, attribute) of the package's module-level imports from flowstone,
    including those under `if TYPE_CHECKING:`, as a type checker reads them."""
    tree = ast.parse(Path(importlib.import_module(package).__file__ or "").read_text())
    nodes = list(tree.body)
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            nodes += node.body
    found: dict[str, tuple[str, str]] = {}
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module not in NOT_EXPORTS:
            found.update({alias.asname or alias.name: (str(node.module), alias.name) for alias in node.names})
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_the_static_imports_written_once(package: str) -> None:
    exported = importlib.import_module(package).__all__
    assert len(set(exported)) == len(exported), f"{package}.__all__ repeats a name"
    assert set(exported) == {*static_imports(package), *PACKAGES[package]}, (
        f"{package}: __all__ and the imports type checkers read name different things"
    )


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_imports_as_its_home_defines_it(package: str) -> None:
    module = importlib.import_module(package)
    wrong = [
        name
        for name, (home, attribute) in static_imports(package).items()
        if getattr(module, name) is not getattr(importlib.import_module(home), attribute)
    ]
    assert not wrong, f"{package}: {wrong} are not what its imports for type checkers say"
    assert set(module.__all__) <= set(dir(module))


def test_a_lazy_package_exports_nothing_beyond_its_all() -> None:
    import flowstone

    assert "BackfillResult" in importlib.import_module("flowstone.assets").__all__
    with pytest.raises(AttributeError, match="has no attribute 'BackfillResult'"):
        _ = flowstone.BackfillResult  # type: ignore[attr-defined]


def test_a_name_imports_its_home_only() -> None:
    """An error class is had without the queue (the homes are tried lightest first)."""
    probe = "import sys, flowstone; flowstone.FlowStoneError; print('flowstone.queue' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
