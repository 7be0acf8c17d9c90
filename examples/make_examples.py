"""Regenerate the small demo image folder ``examples/images/``.

Every output pixel comes from photographs bundled with scikit-image (no
download is needed).  Only public-domain / CC0 photos are used; see
``examples/README.md`` for the origin and licence of each.

Four object categories recur across the folder:

* ``cat``    -- ``skimage.data.chelsea()``
* ``cup``    -- ``skimage.data.coffee()``
* ``person`` -- ``skimage.data.astronaut()``
* ``rocket`` -- ``skimage.data.rocket()``

Each single-object image is a different crop of one source photo, optionally
mirrored, resized and given a mild colour/brightness jitter.  The ``pair_*``
images place two such crops (different categories) side by side on one
canvas at the same height.

The script also writes ``examples/categories.json`` with, for every file, the
objects it contains (left to right) and an approximate bounding box
``[x, y, w, h]`` in output pixels.  The boxes are hand-estimated once in the
source photos (``OBJECT_BOX``) and carried through the crop / flip / resize /
placement arithmetic, so they are approximate.

Run:  ``.venv/bin/python examples/make_examples.py``
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance
from skimage import data

SEED = 20240611
JPEG_QUALITY = 88
MAX_SIDE = 480

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "images"
CATEGORIES_JSON = HERE / "categories.json"

# category -> skimage.data loader (all bundled, public domain / CC0)
SOURCES = {
    "cat": data.chelsea,
    "cup": data.coffee,
    "person": data.astronaut,
    "rocket": data.rocket,
}

# Approximate object box [x, y, w, h] in each *source* photo (estimated by eye).
OBJECT_BOX = {
    "cat": (0, 0, 400, 300),  # cat's head fills the photo; background at right
    "cup": (75, 15, 405, 375),  # cup + saucer + spoon
    "person": (20, 15, 345, 497),  # astronaut, head to bottom edge
    "rocket": (308, 127, 30, 278),  # Falcon 9 on the pad
}


@dataclass(frozen=True)
class View:
    """One crop of a source photo: crop box (left, top, right, bottom) and flip."""

    category: str
    crop: tuple[int, int, int, int]
    flip: bool = False


@dataclass(frozen=True)
class Single:
    name: str
    view: View
    long_side: int


@dataclass(frozen=True)
class Pair:
    name: str
    left: View
    right: View


SINGLES = [
    Single("cat_01.jpg", View("cat", (0, 0, 451, 300)), 480),
    Single("cat_02.jpg", View("cat", (20, 0, 420, 300), flip=True), 400),
    Single("cat_03.jpg", View("cat", (40, 20, 390, 300)), 360),
    Single("cup_01.jpg", View("cup", (40, 0, 520, 400)), 480),
    Single("cup_02.jpg", View("cup", (0, 0, 600, 400), flip=True), 420),
    Single("cup_03.jpg", View("cup", (60, 0, 500, 400)), 360),
    Single("person_01.jpg", View("person", (0, 0, 400, 512)), 480),
    Single("person_02.jpg", View("person", (0, 0, 512, 512), flip=True), 420),
    Single("person_03.jpg", View("person", (10, 0, 390, 380)), 400),
    Single("rocket_01.jpg", View("rocket", (200, 60, 450, 427)), 480),
    Single("rocket_02.jpg", View("rocket", (120, 0, 520, 427), flip=True), 440),
    Single("rocket_03.jpg", View("rocket", (250, 90, 400, 427)), 400),
]

PAIRS = [
    Pair("pair_cat_cup.jpg", View("cat", (0, 0, 400, 300)), View("cup", (70, 10, 490, 395), flip=True)),
    Pair("pair_person_rocket.jpg", View("person", (20, 0, 370, 512)), View("rocket", (230, 60, 420, 427))),
    Pair("pair_rocket_cup.jpg", View("rocket", (230, 60, 420, 427), flip=True), View("cup", (70, 10, 490, 395))),
]


def load_source(category: str) -> Image.Image:
    return Image.fromarray(np.asarray(SOURCES[category]())).convert("RGB")


def crop_view(view: View) -> Image.Image:
    img = load_source(view.category).crop(view.crop)
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if view.flip else img


def view_box(view: View) -> tuple[float, float, float, float]:
    """Object box (x, y, w, h) in the cropped (and flipped) view's pixels."""
    bx, by, bw, bh = OBJECT_BOX[view.category]
    left, top, right, bottom = view.crop
    x0, y0 = max(bx, left) - left, max(by, top) - top
    x1, y1 = min(bx + bw, right) - left, min(by + bh, bottom) - top
    if view.flip:
        width = right - left
        x0, x1 = width - x1, width - x0
    return x0, y0, x1 - x0, y1 - y0


def scale_box(box, sx: float, sy: float, dx: float = 0.0):
    x, y, w, h = box
    return [round(x * sx + dx), round(y * sy), round(w * sx), round(h * sy)]


def jitter(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Mild brightness / contrast / saturation change."""
    b, c, s = rng.uniform([0.85, 0.9, 0.85], [1.15, 1.1, 1.15])
    img = ImageEnhance.Brightness(img).enhance(b)
    img = ImageEnhance.Contrast(img).enhance(c)
    return ImageEnhance.Color(img).enhance(s)


def resize_to(img: Image.Image, width: int, height: int) -> Image.Image:
    return img.resize((width, height), Image.Resampling.LANCZOS)


def make_single(spec: Single, rng: np.random.Generator):
    img = crop_view(spec.view)
    scale = spec.long_side / max(img.size)
    w, h = round(img.width * scale), round(img.height * scale)
    out = jitter(resize_to(img, w, h), rng)
    box = scale_box(view_box(spec.view), w / img.width, h / img.height)
    return out, [{"category": spec.view.category, "bbox": box}]


def make_pair(spec: Pair, rng: np.random.Generator):
    """Two crops resized to one common height and placed side by side."""
    halves = [crop_view(spec.left), crop_view(spec.right)]
    aspect_sum = sum(im.width / im.height for im in halves)
    height = min(MAX_SIDE, int(MAX_SIDE / aspect_sum))
    widths = [round(im.width * height / im.height) for im in halves]
    canvas = Image.new("RGB", (sum(widths), height))
    objects, x = [], 0
    for view, im, w in zip((spec.left, spec.right), halves, widths):
        canvas.paste(jitter(resize_to(im, w, height), rng), (x, 0))
        box = scale_box(view_box(view), w / im.width, height / im.height, dx=x)
        objects.append({"category": view.category, "bbox": box})
        x += w
    return canvas, objects


def write_catalogue(catalogue: dict) -> None:
    """JSON with one line per image: {"name": [{"category": ..., "bbox": [x, y, w, h]}]}."""
    lines = [f"  {json.dumps(name)}: {json.dumps(objs)}" for name, objs in catalogue.items()]
    CATEGORIES_JSON.write_text("{\n" + ",\n".join(lines) + "\n}\n")


def main() -> None:
    rng = np.random.default_rng(SEED)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for old in OUT_DIR.glob("*.jpg"):
        old.unlink()
    catalogue = {}
    jobs = [(s.name, make_single, s) for s in SINGLES] + [(p.name, make_pair, p) for p in PAIRS]
    for name, maker, spec in jobs:
        img, objects = maker(spec, rng)
        assert max(img.size) <= MAX_SIDE, (name, img.size)
        img.save(OUT_DIR / name, "JPEG", quality=JPEG_QUALITY, optimize=True)
        catalogue[name] = objects
    write_catalogue(catalogue)
    total = sum(p.stat().st_size for p in OUT_DIR.glob("*.jpg"))
    print(f"wrote {len(catalogue)} images to {OUT_DIR} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
