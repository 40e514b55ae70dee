"""Public names of a package imported on first use (PEP 562), so importing it stays cheap.

The names are written once, in the package's literal `__all__` (ruff and mypy read it);
where each comes from is not a second list but the first of the package's `homes` that has
it. The `if TYPE_CHECKING:` imports that give type checkers the same names are checked
against both by tests/test_exports.py.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any


def lazy_exports(
    package: str, namespace: dict[str, Any], names: Sequence[str], homes: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's `__getattr__` and `__dir__` for its public `names`: each is taken from the
    first module of `homes` (lightest first: those before it are imported too) that has it,
    and kept in `namespace`, so the next use is a plain lookup. Other names raise
    AttributeError, even when a home has them."""
    public = frozenset(names)

    def getattr_(name: str) -> Any:
        if name not in public:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        for home in homes:
            value = getattr(importlib.import_module(home), name, _MISSING)
            if value is not _MISSING:
                namespace[name] = value
                return value
        raise AttributeError(f"module {package!r} exports {name!r}, but none of {list(homes)} has it")

    def dir_() -> list[str]:
        return sorted({*namespace, *public})

    return getattr_, dir_


_MISSING = object()
