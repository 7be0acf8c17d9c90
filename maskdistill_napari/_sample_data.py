"""Sample data: the example photos shipped in the repository's examples/images folder."""
from __future__ import annotations

from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples" / "images"


def example_images():
    """One Image layer per example photo (they differ in size, so they are not stacked)."""
    from engine.api import discover_images, load_image

    if not EXAMPLES_DIR.is_dir():
        raise FileNotFoundError(f"The example photos are not installed ({EXAMPLES_DIR} is missing); "
                                "they ship with a source checkout of maskdistill-napari.")
    discovery = discover_images(EXAMPLES_DIR)
    return [(load_image(r.path), {"name": Path(r.relative_path).stem, "rgb": True}, "image")
            for r in discovery.images]
