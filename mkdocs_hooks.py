"""mkdocs hooks.

- The navigation's Cards and Types sections come from the catalogue (`nncards.docs.pages.site_nav`,
  the category tree of the same cards `nncards docs` wrote pages for), after the guides that
  mkdocs.yml lists; `nncards docs --check` keeps the pages and the catalogue in step.
- The card images live in `assets/cards/` (they also ship in the wheel), outside `docs_dir`;
  they join the site as `assets/cards/<card id>.svg`, where the card pages link them, so that
  `mkdocs build --strict` checks those links like any other.
"""

from pathlib import Path

from mkdocs.structure.files import File

from nncards.docs.pages import site_nav
from nncards.registry import registry

CARD_IMAGES = Path(__file__).parent / "assets" / "cards"


def on_config(config):
    config["nav"] = [*config["nav"], *site_nav(list(registry().cards.values()))]
    return config


def on_files(files, config):
    for image in sorted(CARD_IMAGES.glob("*.svg")):
        files.append(File.generated(config, f"assets/cards/{image.name}", abs_src_path=str(image)))
    return files
