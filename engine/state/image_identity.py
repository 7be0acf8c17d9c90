"""The user's work on an image follows the image's pixels, not only its file name.

An image's id comes from its path (engine.io.images.image_id_for), and its correction is stored under that id
(corrections/<image_id>.npz). A run changes what a path holds or where pixels are, so before it writes the new
images.json it calls :func:`settle_corrections` with the previous entries and the new ones:

* a file that now holds other pixels (replaced under the same name) keeps its correction where the correction
  still fits (same size: kept, and said so); a correction of another size is set aside in corrections/orphaned/
  (never deleted) and the image starts again from its generated masks;
* a file that is new by name but holds the pixels of an image gone from the folder (renamed or moved; matched
  by the pixel hash images.json stores) takes that image's correction, and the split / pin assignments of its
  masks (their keys are "<image_id>:<mask digest>"), with it.

Each change is one message naming the image, for the run to show. Called under the state lock.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from engine.state.corrections import correction_path, load_assignments, save_assignments

ORPHANED = "orphaned"  # corrections/orphaned/: corrections that no longer fit their image


def settle_corrections(root, previous: dict, entries: list) -> list:
    """Move, keep or set aside each correction as the module docstring says; ``previous``: the images.json
    entries of the last run by image id, ``entries``: the ones about to be written. Returns the messages."""
    root = Path(root)
    gone = _gone_with_corrections(root, previous, entries)
    notes = []
    for entry in entries:
        if correction_path(root, entry["image_id"]).exists():
            note = _keep_or_set_aside(root, entry, previous.get(entry["image_id"]))
        else:
            note = _reattach(root, entry, gone)
        if note:
            notes.append(note)
    return notes


def _gone_with_corrections(root: Path, previous: dict, entries: list) -> dict:
    """{pixel hash: [previous entries]} of images no longer listed whose correction is still there."""
    listed = {entry["image_id"] for entry in entries}
    gone: dict = {}
    for old in previous.values():
        if old["image_id"] not in listed and old.get("pixel_hash") and correction_path(root, old["image_id"]).exists():
            gone.setdefault(old["pixel_hash"], []).append(old)
    return gone


def _reattach(root: Path, entry: dict, gone: dict):
    """Give ``entry`` the correction of a gone image with the same pixels; its message, or None."""
    candidates = gone.get(entry.get("pixel_hash")) or []
    if not candidates:
        return None
    old = candidates.pop(0)  # one correction per image: a second copy of the pixels starts from generated masks
    os.replace(correction_path(root, old["image_id"]), correction_path(root, entry["image_id"]))
    _move_assignments(root, old["image_id"], entry["image_id"])
    return (f"{old['relative_path']} is now {entry['relative_path']} (same pixels): its correction moved with "
            "it")


def _move_assignments(root: Path, old_id: str, new_id: str) -> None:
    """Re-key the split / pin assignments of the old image's masks to the new image id."""
    assignments = load_assignments(root)
    prefix = f"{old_id}:"
    moved = {(f"{new_id}:{key[len(prefix):]}" if key.startswith(prefix) else key): category
             for key, category in assignments.items()}
    if moved != assignments:
        save_assignments(root, moved)


def _keep_or_set_aside(root: Path, entry: dict, old):
    """Keep the image's correction when it fits the image's size (saying so when the pixels changed), else
    move it to corrections/orphaned/; the message, or None when nothing changed."""
    size = correction_size(correction_path(root, entry["image_id"]))
    image_size = (int(entry["height"]), int(entry["width"]))
    name = entry["relative_path"] + ("" if entry.get("plane") is None else f" (plane {entry['plane']})")
    if size is None:  # unreadable: left for the label state to report (it falls back to the generated masks)
        return None
    if size != image_size:
        kept = set_aside(root, entry["image_id"])
        return (f"{name} is now {image_size[1]} x {image_size[0]} pixels but its correction is "
                f"{size[1]} x {size[0]}: the correction was set aside in {kept} and the image starts again from "
                "its generated masks")
    if old is not None and old.get("pixel_hash") and old.get("pixel_hash") != entry.get("pixel_hash"):
        return f"{name} changed on disk (same size): its correction was kept; check it in the review"
    return None


def correction_size(path: Path):
    """(height, width) of a stored correction's label map, read from the array's header without decoding it;
    None when the file cannot be read."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open("labels.npy") as member:
            version = np.lib.format.read_magic(member)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape = read_header(member)[0]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return tuple(int(v) for v in shape) if len(shape) == 2 else None


def set_aside(root: Path, image_id: str) -> Path:
    """Move the image's correction to corrections/orphaned/ (a free name: nothing there is overwritten)."""
    source = correction_path(root, image_id)
    folder = source.parent / ORPHANED
    folder.mkdir(exist_ok=True)
    target, n = folder / source.name, 1
    while target.exists():
        n += 1
        target = folder / f"{source.stem}.{n}{source.suffix}"
    os.replace(source, target)
    return target
