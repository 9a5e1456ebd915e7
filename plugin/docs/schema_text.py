"""Readable summaries of a parameter's JSON Schema: the allowed values or range of a port."""

from __future__ import annotations

import json

JSON_TYPE_WORDS = {"integer": "integer", "number": "number", "boolean": "true or false",
                   "string": "text", "array": "list", "object": "object"}


def resolve(prop: dict, defs: dict) -> dict:
    ref = prop.get("$ref")
    return defs[ref.rsplit("/", 1)[-1]] if ref else prop


# JSON Schema bound: (sign after the name, sign before it)
LOWER = {"minimum": ("≥", "≤"), "exclusiveMinimum": (">", "<")}
UPPER = {"maximum": "≤", "exclusiveMaximum": "<"}


def _bounds(name: str, prop: dict) -> str:
    """"0 ≤ momentum ≤ 1", "epsilon > 0", "rate ≤ 1" or ""."""
    lower = next(((json.dumps(prop[k]), *signs) for k, signs in LOWER.items() if k in prop), None)
    upper = next(((json.dumps(prop[k]), sign) for k, sign in UPPER.items() if k in prop), None)
    if lower and upper:
        return f"{lower[0]} {lower[2]} {name} {upper[1]} {upper[0]}"
    if lower:
        return f"{name} {lower[1]} {lower[0]}"
    return f"{name} {upper[1]} {upper[0]}" if upper else ""


def _count(prop: dict, low: str, high: str, unit: str) -> str:
    if low in prop and high in prop:
        return f"exactly {prop[low]} {unit}" if prop[low] == prop[high] else f"{prop[low]} to {prop[high]} {unit}"
    if low in prop:
        return f"at least {prop[low]} {unit}"
    return f"at most {prop[high]} {unit}" if high in prop else ""


def allowed(name: str, prop: dict, defs: dict, bare_type: bool = False) -> str:
    """What values `prop` accepts, in words ("" when its type says it all and `bare_type` is
    false). Nullable unions end in "or null"."""
    prop = resolve(prop, defs)
    if "anyOf" in prop:
        members = [resolve(m, defs) for m in prop["anyOf"]]
        words = [allowed(name, m, defs, bare_type=True) for m in members if m.get("type") != "null"]
        if any(m.get("type") == "null" for m in members):
            words.append("null")
        return " or ".join(words)
    if "enum" in prop:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    kind = prop.get("type")
    if kind == "object" and "properties" in prop:
        return "object with keys " + ", ".join(f"`{key}`" for key in prop["properties"])
    if kind == "array":
        items = allowed(f"{name}[i]", prop.get("items", {}), defs, bare_type=True)
        size = _count(prop, "minItems", "maxItems", "items")
        return "list" + (f" of {size}" if size else "") + (f", each {items}" if items else "")
    detail = _bounds(name, prop) or (_count(prop, "minLength", "maxLength", "characters") if kind == "string" else "")
    if detail:
        return detail
    return JSON_TYPE_WORDS.get(kind, "any value") if bare_type else ""


def object_keys(prop: dict, defs: dict) -> dict | None:
    """The schema of an Object port (its `properties` and `required`), nullable or not."""
    prop = resolve(prop, defs)
    for member in [prop, *(resolve(m, defs) for m in prop.get("anyOf", []))]:
        if member.get("type") == "object" and "properties" in member:
            return member
    return None
