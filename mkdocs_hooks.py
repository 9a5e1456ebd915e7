"""mkdocs hook: the card images live in `assets/cards/` (they also ship in the wheel), outside
`docs_dir`; this adds them to the site as `assets/cards/<card id>.svg`, where the card pages
link them, so that `mkdocs build --strict` checks those links like any other."""

from pathlib import Path

from mkdocs.structure.files import File

CARD_IMAGES = Path(__file__).parent / "assets" / "cards"


def on_files(files, config):
    for image in sorted(CARD_IMAGES.glob("*.svg")):
        files.append(File.generated(config, f"assets/cards/{image.name}", abs_src_path=str(image)))
    return files
