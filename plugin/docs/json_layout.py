"""JSON laid out for a page: no line wider than the column, so a reader never scrolls sideways.

A value that fits on the rest of its line stays on one line (`json.dumps` spacing). A longer
object or list packs as many of its entries per line as fit, and only an entry too long for a
line of its own is broken further, by the same rules.
"""

from __future__ import annotations

import json

WIDTH = 78  # characters of code a card page's column shows at 1280 px without scrolling (13.6 px monospace in 688 px)
INDENT = "  "


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False)  # "…" and "²" as themselves, as a reader types them


def laid_out(value, width: int = WIDTH) -> str:
    return "\n".join(_lines(value, "", width))


def _lines(value, indent: str, width: int, lead: str = "", tail: str = "") -> list[str]:
    """`value` after `indent + lead` (e.g. `"key": `), followed by `tail` (e.g. a comma)."""
    compact = _json(value)
    if len(indent) + len(lead) + len(compact) + len(tail) <= width or not isinstance(value, (dict, list)) \
            or not value:
        return [f"{indent}{lead}{compact}{tail}"]
    entries = [(f"{_json(key)}: ", item) for key, item in value.items()] if isinstance(value, dict) \
        else [("", item) for item in value]
    brackets = "{}" if isinstance(value, dict) else "[]"
    return [f"{indent}{lead}{brackets[0]}", *_packed(entries, indent + INDENT, width), f"{indent}{brackets[1]}{tail}"]


def _packed(entries: list[tuple[str, object]], indent: str, width: int) -> list[str]:
    """Entries (a key's lead and a value), as many a line as fit."""
    lines: list[str] = []
    current = ""
    for index, (lead, item) in enumerate(entries):
        comma = "," if index < len(entries) - 1 else ""
        text = lead + _json(item) + comma
        if current and len(indent) + len(current) + 1 + len(text) <= width:
            current += " " + text
            continue
        if current:
            lines.append(indent + current)
        current = ""
        if len(indent) + len(text) <= width:
            current = text
        else:
            lines += _lines(item, indent, width, lead, comma)
    if current:
        lines.append(indent + current)
    return lines
