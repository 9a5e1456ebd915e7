"""Positions for an imported graph: a layered layout, data flowing left to right.

Each node sits in the column of its longest path from a source (longest-path layering); nodes
that only feed others without inputs of their own (companion initializers, wrapped layers) sit
one column before the first node they feed. Within a column, nodes keep the order they were added.
"""

from __future__ import annotations

import graphlib

COLUMN_WIDTH = 280
ROW_HEIGHT = 160


def place(graph: dict) -> None:
    """Set every node's `position` in place."""
    predecessors: dict[str, set[str]] = {n["id"]: set() for n in graph["nodes"]}
    successors: dict[str, set[str]] = {n["id"]: set() for n in graph["nodes"]}
    for edge in graph["edges"]:
        predecessors[edge["target"]].add(edge["source"])
        successors[edge["source"]].add(edge["target"])
    column: dict[str, int] = {}
    order = list(graphlib.TopologicalSorter(predecessors).static_order())
    for node in order:
        column[node] = max((column[p] + 1 for p in predecessors[node]), default=0)
    for node in reversed(order):  # feeders move next to what they feed
        if not predecessors[node] and successors[node]:
            column[node] = max(0, min(column[s] for s in successors[node]) - 1)
    rows: dict[int, int] = {}
    for node in graph["nodes"]:
        index = column[node["id"]]
        node["position"] = {"x": index * COLUMN_WIDTH, "y": rows.get(index, 0) * ROW_HEIGHT}
        rows[index] = rows.get(index, 0) + 1
