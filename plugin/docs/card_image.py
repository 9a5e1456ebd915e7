"""SVG pictures of cards, drawn from the CARD JSON alone (CONTRACT §3).

The documentation shows these pictures and the editor draws its cards with the same look, so
the visual rules are fixed here, in one place:

- **Frame**: a rounded rectangle (corner radius 6, 1 px border `#2b2d42`) on a white body.
  Width is `MIN_WIDTH` (200) or wider when a row needs it, rounded up to a multiple of 20;
  text widths are estimated as `CHAR_WIDTH` (6.6 px) per character.
- **Header**: `HEADER_HEIGHT` (30 px) band filled `#2b2d42`, the card title in white, bold,
  13 px, left-aligned at x = 12.
- **Rows**: each port takes `ROW_HEIGHT` (22 px). Outputs come first, right-aligned, then the
  inputs, left-aligned, in the card's port order; `PADDING` (8 px) above and below the rows.
- **Sockets**: a port that can take or give an edge has a socket centred on the card edge
  (inputs on the left, outputs on the right): a circle of radius 5 filled with the type colour
  (`nncards.contract.types.TYPES[...].color`) and outlined `#2b2d42`; a variadic port
  (`multiplicity: "n"`) has a 8 × 14 rounded bar instead of a circle, since it takes several
  edges. A literal-only input has no socket: a 3 px bar in its type colour marks its type
  inside the left edge.
- **Labels**: the port's `text`, 12 px, `#2b2d42`, in Helvetica/Arial/sans-serif; bold when
  the port is required.
- **Defaults**: a literal input shows its default right-aligned at 10 px from the right edge,
  11 px monospace, `#6c757d`: strings as they are, other values as compact JSON, objects as
  `{…}`; nothing when the default is null or the input is required. Values longer than
  `MAX_VALUE_CHARS` (16) are cut with "…".

The output depends only on the card JSON and the type colours: the same card always gives
the same bytes, so the generated files can be checked for staleness.
"""

from __future__ import annotations

import json
import math
from xml.sax.saxutils import escape, quoteattr

from nncards.contract.types import TYPES

MIN_WIDTH = 200
CHAR_WIDTH = 6.6
HEADER_HEIGHT = 30
ROW_HEIGHT = 22
PADDING = 8
SOCKET_RADIUS = 5
MAX_VALUE_CHARS = 16
INK = "#2b2d42"
MUTED = "#6c757d"
FONT = "Helvetica, Arial, sans-serif"
MONO = "ui-monospace, Menlo, Consolas, monospace"


def default_label(port: dict) -> str:
    """The default of a literal input as the card shows it ("" when nothing is shown)."""
    value = port.get("default")
    if not port.get("literal") or port.get("required") or value is None:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict):
        text = "{…}"
    else:
        text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS - 1] + "…"


def _text_width(text: str) -> float:
    return len(text) * CHAR_WIDTH


def card_width(card: dict) -> int:
    rows = [_text_width(card["title"]) + 24]
    rows += [_text_width(p["text"]) + 24 for p in card["outputs"]]
    rows += [_text_width(p["text"]) + _text_width(default_label(p)) + 40 for p in card["inputs"]]
    return max(MIN_WIDTH, 20 * math.ceil(max(rows) / 20))


def _socket(x: float, y: float, port: dict) -> str:
    color = TYPES[port["type"]].color
    if port.get("multiplicity") == "n":
        return (f'<rect x="{x - 4}" y="{y - 7}" width="8" height="14" rx="4" '
                f'fill="{color}" stroke="{INK}"/>')
    return f'<circle cx="{x}" cy="{y}" r="{SOCKET_RADIUS}" fill="{color}" stroke="{INK}"/>'


def _label(x: float, y: float, port: dict, anchor: str) -> str:
    weight = ' font-weight="bold"' if port.get("required") else ""
    return (f'<text x="{x}" y="{y + 4}" text-anchor="{anchor}" font-size="12" fill="{INK}"{weight}>'
            f'{escape(port["text"])}</text>')


def render(card: dict) -> str:
    """The SVG document of a card, given its CARD JSON."""
    width = card_width(card)
    rows = len(card["outputs"]) + len(card["inputs"])
    height = HEADER_HEIGHT + 2 * PADDING + rows * ROW_HEIGHT
    margin = SOCKET_RADIUS + 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + 2 * margin}" height="{height + 2}" '
        f'viewBox="{-margin} -1 {width + 2 * margin} {height + 2}" font-family={quoteattr(FONT)} '
        f'role="img" aria-label={quoteattr(card["title"] + " card")}>',
        f'<title>{escape(card["title"])}</title>',
        f'<rect x="0" y="0" width="{width}" height="{height}" rx="6" fill="#ffffff" stroke="{INK}"/>',
        f'<path d="M0 {HEADER_HEIGHT}V6a6 6 0 0 1 6-6H{width - 6}a6 6 0 0 1 6 6V{HEADER_HEIGHT}Z" fill="{INK}"/>',
        f'<text x="12" y="{HEADER_HEIGHT / 2 + 4.5}" font-size="13" font-weight="bold" fill="#ffffff">'
        f'{escape(card["title"])}</text>',
    ]
    y = HEADER_HEIGHT + PADDING + ROW_HEIGHT / 2
    for port in card["outputs"]:
        parts.append(_label(width - 12, y, port, "end"))
        parts.append(_socket(width, y, port))
        y += ROW_HEIGHT
    for port in card["inputs"]:
        parts.append(_label(12, y, port, "start"))
        if port.get("socket"):
            parts.append(_socket(0, y, port))
        else:
            parts.append(f'<rect x="1" y="{y - 7}" width="3" height="14" fill="{TYPES[port["type"]].color}"/>')
        value = default_label(port)
        if value:
            parts.append(f'<text x="{width - 10}" y="{y + 4}" text-anchor="end" font-size="11" '
                         f'font-family={quoteattr(MONO)} fill="{MUTED}">{escape(value)}</text>')
        y += ROW_HEIGHT
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
