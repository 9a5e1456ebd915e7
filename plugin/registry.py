"""The card registry: built-in cards plus third-party packs from the `nncards.cards` entry points."""

from __future__ import annotations

import functools
from importlib.metadata import entry_points

from nncards.card import Card
from nncards.contract.catalog import Catalogue, LoadError

ENTRY_POINT_GROUP = "nncards.cards"


class Registry:
    def __init__(self, cards: list[type[Card]], load_errors: list[LoadError]):
        self.cards: dict[str, type[Card]] = {}
        self.load_errors = list(load_errors)
        for card in cards:
            self.cards.setdefault(card.id, card)

    def get(self, card_id: str) -> type[Card] | None:
        return self.cards.get(card_id)

    def catalogue(self) -> Catalogue:
        return Catalogue(api_version="1", cards=[card.info() for card in self.cards.values()],
                         load_errors=self.load_errors)


def _pack_cards(entry_point) -> list[type[Card]]:
    cards = entry_point.load()()
    bad = [c for c in cards if not (isinstance(c, type) and issubclass(c, Card))]
    if bad:
        raise TypeError(f"expected card classes, got {bad!r}")
    for card in cards:
        card.info()  # a declaration that cannot describe itself is a load error
    return list(cards)


@functools.cache
def registry() -> Registry:
    from nncards.cards import builtin_cards

    cards = builtin_cards()
    known = {card.id for card in cards}
    errors = []
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            pack = _pack_cards(entry_point)
        except Exception as exc:  # a broken pack is reported, never fatal
            errors.append(LoadError(pack=entry_point.name, message=f"{type(exc).__name__}: {exc}"))
            continue
        clashes = sorted(c.id for c in pack if c.id in known)
        if clashes:
            errors.append(LoadError(pack=entry_point.name,
                                    message=f"card ids already taken, pack cards skipped: {', '.join(clashes)}"))
        cards.extend(c for c in pack if c.id not in known)
        known.update(c.id for c in pack)
    return Registry(cards, errors)
