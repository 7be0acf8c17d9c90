"""The user's work on an image follows the image's pixels, not only its file name.

An image's id comes from its path (engine.io.images.image_id_for), and its correction is stored under that id
(corrections/<image_id>.npz). A run changes what a path holds or where pixels are, so before it writes the new
images.json it calls :func:`settle_corrections` with the previous entries and the new ones:

* a file that now holds other pixels (replaced under the same name) keeps its correction where the correction
  still fits (same size: kept, and said so); a correction of another size is set aside in corrections/orphaned/
  (never deleted) and the image starts again from its generated masks;
* a name that now holds the pixels another name held (renamed, moved, names swapped or renumbered; matched by
  the pixel hash images.json stores) takes that image's correction, and the split / pin assignments of its
  masks (their keys are "<image_id>:<mask digest>"), with it; a correction whose pixels are gone from the
  folder and whose name another image's correction needs is set aside in corrections/orphaned/.

Each change is one message naming the image, for the run to show. Called under the state lock.
:func:`keep_coco_ids` gives a renamed or moved image its COCO id back, so exports keep naming it alike.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from engine.io.images import message_name
from engine.state.corrections import correction_path, load_assignments, save_assignments

ORPHANED = "orphaned"  # corrections/orphaned/: corrections that no longer fit their image


def settle_corrections(root, previous: dict, entries: list) -> list:
    """Move, keep or set aside each correction as the module docstring says; ``previous``: the images.json
    entries of the last run by image id, ``entries``: the ones about to be written. Returns the messages."""
    root = Path(root)
    notes, arrived = _follow_pixels(root, previous, entries)
    for entry in entries:
        if entry["image_id"] not in arrived and correction_path(root, entry["image_id"]).exists():
            note = _keep_or_set_aside(root, entry, previous.get(entry["image_id"]))
            if note:
                notes.append(note)
    return notes


def keep_coco_ids(previous: dict, entries: list) -> None:
    """A renamed or moved image keeps its COCO image id (``entries`` changed in place): a name new to the project
    whose pixels an image of the last run held, under a name now gone from the folder, takes that image's id
    when no other image holds it. Exports then name it by the id a trainer's earlier files know."""
    present = {entry["image_id"] for entry in entries}
    used = {entry["coco_id"] for entry in entries}
    gone: dict[str, int] = {}  # pixel hash -> the COCO id of a name no longer in the folder
    for old in previous.values():
        if old["image_id"] not in present and old.get("pixel_hash"):
            gone.setdefault(old["pixel_hash"], old["coco_id"])
    for entry in entries:
        coco_id = gone.get(entry.get("pixel_hash"))
        if entry["image_id"] not in previous and coco_id is not None and coco_id not in used:
            used.discard(entry["coco_id"])
            entry["coco_id"] = coco_id
            used.add(coco_id)
            del gone[entry["pixel_hash"]]


def _follow_pixels(root: Path, previous: dict, entries: list) -> tuple:
    """Corrections whose pixels now lie under another name (renamed, moved, names swapped or renumbered) go
    to that name; (messages, ids that received a correction). A name still holding a correction of other
    pixels is freed first: when those pixels are gone from the folder its correction is set aside (said); when
    they moved on too (names that swap in a ring), its correction waits in corrections/orphaned/ for its turn.
    The mask assignments follow in one rewrite at the end."""
    now_at: dict[str, dict] = {}  # pixel hash -> the first entry holding those pixels
    for entry in entries:
        if entry.get("pixel_hash"):
            now_at.setdefault(entry["pixel_hash"], entry)
    movable = _corrections_elsewhere(root, previous, entries, now_at)
    source = {old["image_id"]: correction_path(root, old["image_id"]) for old in movable}
    notes, arrived, renamed = [], set(), {}
    while movable:
        old = next((m for m in movable if not correction_path(root, now_at[m["pixel_hash"]]["image_id"]).exists()),
                   None)
        if old is None:  # every target holds a correction: free one
            old = movable[0]
            target_id = now_at[old["pixel_hash"]]["image_id"]
            before = previous.get(target_id) or {}
            if target_id in arrived or before.get("pixel_hash") == old["pixel_hash"]:
                movable.remove(old)  # one correction per image: a copy of the pixels keeps its own, this stays
                continue
            if target_id in source:  # a ring: that correction moves on later, from where it waits
                source[target_id] = set_aside(root, target_id)
            else:
                target = now_at[old["pixel_hash"]]
                notes.append(f"{target['relative_path']} now holds other pixels, and its old ones are gone from "
                             f"the folder: its correction was set aside in {set_aside(root, target_id)}")
        movable.remove(old)
        target = now_at[old["pixel_hash"]]
        os.replace(source[old["image_id"]], correction_path(root, target["image_id"]))
        renamed[old["image_id"]] = target["image_id"]
        arrived.add(target["image_id"])
        notes.append(f"{old['relative_path']} is now {target['relative_path']} (same pixels): its correction "
                     "moved with it")
    _move_assignments(root, renamed)
    return notes, arrived


def _corrections_elsewhere(root: Path, previous: dict, entries: list, now_at: dict) -> list:
    """Previous entries with a correction whose pixels are no longer under their id but under another one."""
    listed = {entry["image_id"]: entry for entry in entries}
    found = []
    for old in previous.values():
        target = now_at.get(old.get("pixel_hash"))
        still_here = listed.get(old["image_id"], {}).get("pixel_hash") == old.get("pixel_hash")
        if (target is not None and target["image_id"] != old["image_id"] and not still_here
                and correction_path(root, old["image_id"]).exists()):
            found.append(old)
    return found


def _move_assignments(root: Path, renamed: dict) -> None:
    """Re-key the split / pin assignments ("<image id>:<mask digest>") of the moved images' masks, all at once
    (names that swap keep their own)."""
    if not renamed:
        return
    assignments = load_assignments(root)
    moved = {}
    for key, category in assignments.items():
        image_id, sep, digest = key.partition(":")
        moved[f"{renamed[image_id]}:{digest}" if sep and image_id in renamed else key] = category
    if moved != assignments:
        save_assignments(root, moved)


def _keep_or_set_aside(root: Path, entry: dict, old):
    """Keep the image's correction when it fits the image's size (saying so when the pixels changed), else
    move it to corrections/orphaned/; the message, or None when nothing changed."""
    size = correction_size(correction_path(root, entry["image_id"]))
    image_size = (int(entry["height"]), int(entry["width"]))
    name = message_name(entry)
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
