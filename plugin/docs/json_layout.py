"""JSON laid out for a page: no line wider than the column, so a reader never scrolls sideways.

A value that fits on the rest of its line stays on one line (`json.dumps` spacing). A longer
object puts one key per line; a longer list packs as many of its items per line as fit, and
only an item too long for a line of its own is broken further, by the same rules.
"""

from __future__ import annotations

import json

WIDTH = 78  # characters of code a card page's column shows at 1280 px without scrolling (13.6 px monospace in 688 px)
INDENT = "  "


def laid_out(value, width: int = WIDTH) -> str:
    return "\n".join(_lines(value, "", width))


def _lines(value, indent: str, width: int, lead: str = "", tail: str = "") -> list[str]:
    """`value` after `indent + lead` (e.g. `"key": `), followed by `tail` (e.g. a comma)."""
    compact = json.dumps(value)
    if len(indent) + len(lead) + len(compact) + len(tail) <= width or not isinstance(value, (dict, list)) \
            or not value:
        return [f"{indent}{lead}{compact}{tail}"]
    inner = indent + INDENT
    if isinstance(value, dict):
        items = list(value.items())
        body = [line for index, (key, item) in enumerate(items)
                for line in _lines(item, inner, width, f"{json.dumps(key)}: ", "," if index < len(items) - 1 else "")]
        return [f"{indent}{lead}{{", *body, f"{indent}}}{tail}"]
    return [f"{indent}{lead}[", *_packed(value, inner, width), f"{indent}]{tail}"]


def _packed(items: list, indent: str, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for index, item in enumerate(items):
        text = json.dumps(item) + ("," if index < len(items) - 1 else "")
        if current and len(indent) + len(current) + 1 + len(text) <= width:
            current += " " + text
            continue
        if current:
            lines.append(indent + current)
        if len(indent) + len(text) <= width:
            current = text
        else:
            current = ""
            lines += _lines(item, indent, width, tail=text[-1] if text.endswith(",") else "")
    if current:
        lines.append(indent + current)
    return lines
