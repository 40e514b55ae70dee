"""Drawings computed on the server: the asset graph and the throughput chart, as shapes
with coordinates that the templates turn into SVG (no drawing library in the browser)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowstone.insights import CANCELLED, FAILED, FRESH, MISSING, QUEUED, RUNNING, STALE, Throughput

NODE_WIDTH, NODE_HEIGHT = 168, 44
COLUMN_GAP, ROW_GAP, MARGIN = 64, 18, 12

HEALTH_ORDER = (FAILED, CANCELLED, RUNNING, QUEUED, STALE, MISSING, FRESH)
"""The status an asset box shows: the first of these its partitions are in (the read
layer's vocabulary, most urgent first)."""


@dataclass(frozen=True)
class Box:
    """One asset in the drawing: its box and the status that colours it."""

    name: str
    x: int
    y: int
    status: str
    counts: Mapping[str, int]

    @property
    def width(self) -> int:
        """Box width."""
        return NODE_WIDTH

    @property
    def height(self) -> int:
        """Box height."""
        return NODE_HEIGHT


@dataclass(frozen=True)
class Edge:
    """A dependency, drawn from the upstream box's right side to the dependent's left."""

    upstream: str
    downstream: str
    path: str


@dataclass(frozen=True)
class Drawing:
    """The asset graph laid out left to right, upstream first."""

    boxes: list[Box]
    edges: list[Edge]
    width: int
    height: int


def health(counts: Mapping[str, int]) -> str:
    """The status of an asset at a glance: its most urgent partition status, `missing`
    when it has no partition yet."""
    return next((status for status in HEALTH_ORDER if counts.get(status)), MISSING)


def layout(assets: Sequence[Mapping[str, Any]]) -> Drawing:
    """Columns by depth (an asset sits right of everything it depends on); rows in the
    order given (dependency order, ties by name). Each asset: `name`, `depends_on`, `counts`."""
    depth: dict[str, int] = {}
    for asset in assets:  # dependency order: upstream depths are known
        depth[asset["name"]] = 1 + max((depth[d] for d in asset["depends_on"] if d in depth), default=-1)
    rows: dict[int, int] = {}
    boxes: dict[str, Box] = {}
    for asset in assets:
        column = depth[asset["name"]]
        row = rows[column] = rows.get(column, -1) + 1
        x = MARGIN + column * (NODE_WIDTH + COLUMN_GAP)
        y = MARGIN + row * (NODE_HEIGHT + ROW_GAP)
        boxes[asset["name"]] = Box(asset["name"], x, y, health(asset["counts"]), asset["counts"])
    edges = [
        _edge(boxes[dep], boxes[asset["name"]])
        for asset in assets
        for dep in asset["depends_on"]
        if dep in boxes
    ]
    width = MARGIN * 2 + (max(depth.values(), default=0) + 1) * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP
    height = MARGIN * 2 + (max(rows.values(), default=0) + 1) * (NODE_HEIGHT + ROW_GAP) - ROW_GAP
    return Drawing(list(boxes.values()), edges, width, height)


def _edge(source: Box, target: Box) -> Edge:
    x1, y1 = source.x + NODE_WIDTH, source.y + NODE_HEIGHT // 2
    x2, y2 = target.x, target.y + NODE_HEIGHT // 2
    bend = (x2 - x1) // 2
    return Edge(source.name, target.name, f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}")


@dataclass(frozen=True)
class Bar:
    """One minute of the throughput chart: completed on top of discarded."""

    x: int
    width: int
    completed_y: int
    completed_height: int
    discarded_y: int
    discarded_height: int
    minute: Throughput


CHART_WIDTH, CHART_HEIGHT, BAR_GAP = 360, 64, 2


def bars(minutes: Sequence[Throughput]) -> tuple[list[Bar], int]:
    """The throughput chart's bars, scaled to the busiest minute, and that minute's total."""
    peak = max((m.completed + m.discarded for m in minutes), default=0)
    if not minutes:
        return [], peak
    width = CHART_WIDTH // len(minutes)
    drawn = []
    for index, minute in enumerate(minutes):
        failed = round(CHART_HEIGHT * minute.discarded / peak) if peak else 0
        done = round(CHART_HEIGHT * minute.completed / peak) if peak else 0
        x = index * width
        bar = Bar(
            x, width - BAR_GAP, CHART_HEIGHT - failed - done, done, CHART_HEIGHT - failed, failed, minute
        )
        drawn.append(bar)
    return drawn, peak
