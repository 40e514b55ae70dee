"""Argument checks shared by inserting and configuration: clear errors that name the field."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from flowstone.errors import ValidationError, ValidationTypeError

MAX_NAME_LENGTH = 128
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_identifier(value: str, field: str) -> str:
    """A SQL identifier we are willing to quote into DDL: lower-case letters, digits, `_`."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ValidationError(
            f"{field} must be a lower-case SQL identifier (letters, digits, '_', "
            f"at most 63 characters, not starting with a digit); got {value!r}"
        )
    return value


def check_name(value: str, field: str) -> str:
    """A queue or worker name: a non-empty string of at most 128 characters."""
    if not isinstance(value, str):
        raise ValidationTypeError(f"{field} must be a string; got {type(value).__name__}")
    if not value.strip():
        raise ValidationError(f"{field} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise ValidationError(f"{field} must be at most {MAX_NAME_LENGTH} characters; got {len(value)}")
    return check_text(value, field)


def check_priority(value: int) -> int:
    """Priority 0 (highest) to 9, as in Oban."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
        raise ValidationError(f"priority must be an integer from 0 to 9; got {value!r}")
    return value


def check_max_attempts(value: int) -> int:
    """At least one attempt; smallint in the table."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 32767:
        raise ValidationError(f"max_attempts must be an integer from 1 to 32767; got {value!r}")
    return value


MAX_JSON_DEPTH = 200
"""How many arrays and objects deep a JSON document FlowStone writes may nest (args,
meta, results, asset values), and the deepest a node decodes when it reads a row (see
`jsonb`): far beyond real use, well within what every decoder on the way (Postgres,
psycopg, Python's json on any version) handles."""


def check_json(value: Any, path: str = "args", depth: int = 0) -> Any:
    """`value` as JSON gives it back (mappings become dicts, tuples lists); a TypeError
    names the key path of the first value JSON (as Postgres stores it) cannot carry, and
    a ValueError the path of the first array or object nested deeper than MAX_JSON_DEPTH
    (`depth` counts the arrays and objects around `value`)."""
    if depth >= MAX_JSON_DEPTH and isinstance(value, Mapping | list | tuple):
        raise ValidationError(f"{path} nests deeper than {MAX_JSON_DEPTH} levels")
    if type(value) is dict:  # first: job args are a dict, and the Mapping check is slow
        return _check_object(value, path, depth)
    if isinstance(value, str):
        return check_text(value, path)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationTypeError(f"{path} is {value!r}, which JSON cannot represent")
        return value
    if isinstance(value, Mapping):
        return _check_object(value, path, depth)
    if isinstance(value, list | tuple):
        return [check_json(item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value)]
    raise ValidationTypeError(f"{path} is not JSON-serializable: {type(value).__name__} value {value!r}")


def _check_object(value: Mapping[Any, Any], path: str, depth: int) -> dict[str, Any]:
    # Plain keys and values are kept as they are; a path is named only on the way to a
    # nested value or an error (job args are mostly flat: this is the insert's hot path).
    checked: dict[str, Any] = {}
    for key, item in value.items():
        if type(key) is not str or not _storable(key):
            key = _check_key(key, path)
        checked[key] = item if _plain(item) else check_json(item, f"{path}.{key}", depth + 1)
    return checked


def _check_key(key: Any, path: str) -> str:
    if not isinstance(key, str):
        raise ValidationTypeError(f"{path} has a non-string key {key!r}; JSON object keys are strings")
    return check_text(key, f"{path} key")


def check_text(value: str, path: str) -> str:
    """`value`, a string Postgres can store as text."""
    if not isinstance(value, str):
        raise ValidationTypeError(f"{path} must be a string; got {type(value).__name__}")
    if not _storable(value):
        raise ValidationTypeError(
            f"{path} has a NUL or lone surrogate character, which Postgres cannot store"
        )
    return value


def _plain(value: Any) -> bool:
    """A scalar JSON keeps as it is (exact types: a subclass takes the long way)."""
    kind = type(value)
    if kind is str:
        return _storable(value)
    if kind is float:
        return math.isfinite(value)
    return value is None or kind is int or kind is bool


def _storable(text: str) -> bool:
    """No NUL, no lone surrogate: a string Postgres can store."""
    return "\x00" not in text and (text.isascii() or not _has_surrogate(text))


def _has_surrogate(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return True
    return False


def check_args(args: Any, field: str = "args") -> dict[str, Any]:
    """Job args (and meta) are a JSON object: a mapping with string keys.

    Returns a deep copy as JSON gives it back, so the job in hand equals the stored one
    and later changes to the caller's objects do not leak in.
    """
    if type(args) is not dict and not isinstance(args, Mapping):
        raise ValidationTypeError(f"{field} must be a mapping (a JSON object); got {type(args).__name__}")
    copy: dict[str, Any] = check_json(args, field)
    return copy


def clean_text(text: str, limit: int) -> str:
    """`text` as Postgres can store it: NUL and lone surrogates escaped, at most `limit`
    characters (the cut is marked)."""
    cleaned = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    if len(cleaned) > limit:
        return f"{cleaned[:limit]}… [{len(cleaned) - limit} more characters cut]"
    return cleaned
