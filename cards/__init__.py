"""nncards' built-in cards: every module of this package that lists `CARDS` contributes them.

Adding a card is a declaration in one of these modules (or a new module): nothing else changes.
"""

import importlib
import pkgutil


def builtin_cards() -> list:
    cards = []
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        cards.extend(getattr(importlib.import_module(f"{__name__}.{module.name}"), "CARDS", []))
    return cards
