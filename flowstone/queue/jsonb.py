"""Decoding the jsonb columns defensively: a document no one can decode must not take a
node down. Rows are written by any producer with SQL, so a job's args may nest deeper
than FlowStone writes them (`MAX_JSON_DEPTH`, the limit `Worker.new` enforces). Such a
document is found from its text, before decoding, so the same row gets the same answer
on every Python (3.11's decoder fails thousands of levels down, 3.13's follows them); it
decodes to `UndecodableJSON`, which the executor discards with a clear error and front
ends show as what it is."""

from __future__ import annotations

import json
import re
from typing import Any

from psycopg.abc import AdaptContext
from psycopg.types.json import set_json_loads

from flowstone.queue.validation import MAX_JSON_DEPTH


class UndecodableJSON(dict[str, str]):
    """Stands in for a JSON document that could not be decoded; says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(__undecodable__=reason)
        self.reason = reason


def loads(data: bytes | str) -> Any:
    """`json.loads`, with documents nested deeper than MAX_JSON_DEPTH as `UndecodableJSON`."""
    if nests_deeper(data, MAX_JSON_DEPTH):
        return UndecodableJSON(f"it nests deeper than {MAX_JSON_DEPTH} levels ({len(data)} bytes of JSON)")
    return json.loads(data)


def prepare(context: AdaptContext) -> None:
    """Make a connection (or cursor) decode json and jsonb with `loads`."""
    set_json_loads(loads, context)


_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'[]{}"')))
_RUN = re.compile(rb"\[+|\]+")
_SHALLOW = 4
"""Passes that remove innermost bracket pairs before the walk: a wide document (a list of
records) is shallow, and nothing of it is left to walk bracket by bracket."""


def nests_deeper(text: bytes | str, limit: int) -> bool:
    """Whether the valid JSON `text` nests arrays and objects more than `limit` levels
    deep, read from the text without decoding it. Free for the usual document: one with at
    most `limit` opening brackets cannot nest deeper, so only larger ones are scanned."""
    if len(text) <= 2 * limit + 1:
        return False
    raw = text.encode() if isinstance(text, str) else text
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets, passes = _brackets(raw), min(_SHALLOW, limit)
    for _ in range(passes):  # each pass lowers the depth by one
        brackets = brackets.replace(b"[]", b"")
    depth = 0
    for run in _RUN.findall(brackets):
        depth += len(run) if run[0] == ord("[") else -len(run)
        if depth > limit - passes:
            return True
    return False


def _brackets(text: bytes) -> bytes:
    """The brackets of JSON `text` outside its strings, braces turned square. Backslashes
    appear only in strings, as escapes; without the escaped ones and escaped quotes, the
    quotes pair up, so two adjacent ones (around a string or between two) can go, and of
    what is left every other piece between quotes is outside a string."""
    if b"\\" in text:
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    kept = text.translate(_SQUARE, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in kept:  # strings holding brackets
        kept = b"".join(kept.split(b'"')[::2])
    return kept
