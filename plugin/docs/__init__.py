"""Generated documentation: a page and a picture per card, a page per type, and their indexes.

`nncards docs` writes, relative to the repository root:

- `docs/cards/<card id>.md` and `docs/cards/index.md` (the category tree from each card's path),
  and `docs/cards/keras-layers.md` (the Keras layers without a card, `nncards.cards.exclusions`),
- `docs/types/<type id>.md` and `docs/types/index.md`,
- `assets/cards/<card id>.svg` (see `nncards.docs.card_image` for the look).

These folders hold only generated files: regenerating removes the pages of cards that are
gone. `nncards docs --check` writes nothing and fails when a file is missing, stale or
obsolete. Both refuse a card or port without help text.
"""

from __future__ import annotations

from pathlib import Path

from nncards.cards.exclusions import EXCLUDED, UNCARDED_ARGUMENTS
from nncards.card import Card
from nncards.docs.card_image import render
from nncards.docs.schema_text import object_keys
from nncards.contract.types import TYPES

GENERATED_DIRS = {"docs/cards": ".md", "docs/types": ".md", "assets/cards": ".svg"}


def missing_help(cards: list[type[Card]]) -> list[str]:
    """One line per card or port (Object keys included) whose help text is empty."""
    problems = []
    for card in cards:
        if not card.help.strip():
            problems.append(f"{card.id}: the card has no help text")
        for side, ports in (("input", card.inputs()), ("output", card.outputs)):
            problems += [f"{card.id}: {side} {port.id!r} has no help text" for port in ports if not port.help.strip()]
        schema = card.params_schema()
        for name, prop in schema.get("properties", {}).items():
            keys = (object_keys(prop, schema.get("$defs", {})) or {}).get("properties", {})
            problems += [f"{card.id}: key {key!r} of input {name!r} has no help text"
                         for key, key_prop in keys.items() if not key_prop.get("description", "").strip()]
    return problems


def generate(cards: list[type[Card]]) -> dict[str, str]:
    """Every generated file, as {path relative to the repository root: content}."""
    from nncards.docs.pages import KERAS_LAYERS_PAGE, card_page, cards_index, keras_layers_page, type_page, types_index

    by_id = {card.id: card for card in cards}
    files = {"docs/cards/index.md": cards_index(cards), "docs/types/index.md": types_index(),
             f"docs/{KERAS_LAYERS_PAGE}": keras_layers_page(EXCLUDED, UNCARDED_ARGUMENTS)}
    for card in cards:
        files[f"docs/cards/{card.id}.md"] = card_page(card, by_id)
        files[f"assets/cards/{card.id}.svg"] = render(card.info().model_dump(mode="json"))
    for data_type in TYPES.values():
        files[f"docs/types/{data_type.id}.md"] = type_page(data_type, cards)
    return files


def _existing(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix()
            for folder, suffix in GENERATED_DIRS.items() for path in (root / folder).glob(f"*{suffix}")}


def differences(root: Path, files: dict[str, str]) -> list[str]:
    """What `nncards docs` would change under `root`: "missing", "stale" or "obsolete" lines."""
    lines = []
    for path, content in sorted(files.items()):
        target = root / path
        if not target.exists():
            lines.append(f"missing: {path}")
        elif target.read_text(encoding="utf-8") != content:
            lines.append(f"stale: {path}")
    lines += [f"obsolete: {path}" for path in sorted(_existing(root) - files.keys())]
    return lines


def write(root: Path, files: dict[str, str]) -> list[str]:
    changes = differences(root, files)
    for path in _existing(root) - files.keys():
        (root / path).unlink()
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text(encoding="utf-8") != content:
            target.write_text(content, encoding="utf-8")
    return changes


def main(root: Path, check: bool, cards: list[type[Card]] | None = None) -> int:
    """`nncards docs [--check]`; the exit status."""
    if cards is None:
        from nncards.registry import registry

        cards = list(registry().cards.values())
    problems = missing_help(cards)
    if problems:
        print("error: every card and port needs help text:")
        print("\n".join(f"  {line}" for line in problems))
        return 1
    files = generate(cards)
    if check:
        changes = differences(root, files)
        if changes:
            print("the generated docs are out of date (run `nncards docs`):")
            print("\n".join(f"  {line}" for line in changes))
            return 1
        print(f"{len(files)} generated files are up to date")
        return 0
    changes = write(root, files)
    print(f"{len(changes)} of {len(files)} generated files written" + "".join(f"\n  {c}" for c in changes))
    return 0
