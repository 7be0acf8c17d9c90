"""Small pure helpers on binary masks: RLE, boxes, IoU, connected components, resizing; the mask stacks that
index like (n, H, W) arrays without holding them, and ``Proposals`` (an image's masks with their fields)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from scipy import ndimage

LARGE_MASK_PIXELS = 2 ** 20  # above this, a mask is encoded from its bounding box (rle_from_crop)


def encode_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a 2-D boolean mask, with ``counts`` as str so it can go into JSON."""
    if mask.size > LARGE_MASK_PIXELS:  # a small object of a large image: skip the full-frame copies
        mask = np.asarray(mask, bool)
        box = mask_box(mask)
        return rle_from_crop(mask[box] if box else np.zeros((0, 0), bool),
                             box or (slice(0, 0), slice(0, 0)), mask.shape)
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    counts = rle["counts"]
    height, width = (int(v) for v in rle["size"])
    if height * width > LARGE_MASK_PIXELS and isinstance(counts, (str, bytes)):
        runs = rle_counts(counts)
        if runs is None:
            raise ValueError("garbled compressed RLE counts")
        return _decode_runs(runs, height, width)
    rle = {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(rle).astype(bool)


def rle_counts(counts) -> np.ndarray | None:
    """Run lengths (int64 array) of a COCO compressed RLE string (pycocotools' rleFrString, vectorised), or None
    if it is garbled: 5 bits per character from '0', 0x20 continues the value (at most 7 characters), 0x10 marks
    a negative one, from the fourth on a difference to the run two before. The one decoder of RLE strings:
    decode_rle uses it for large masks, engine.io.coco_validation to check a string before pycocotools' C decoder
    (which trusts it) sees it; every project file's masks are checked on each read, hence numpy, not a loop.
    """
    try:
        text = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    except UnicodeEncodeError:
        return None
    chars = np.frombuffer(text, np.uint8).astype(np.int64) - 48
    if chars.size == 0:
        return np.zeros(0, np.int64)
    if chars.min() < 0 or chars.max() >= 64 or chars[-1] & 0x20:
        return None  # a character outside the alphabet, or a number left unfinished
    ends = np.flatnonzero((chars & 0x20) == 0)  # each number's last character
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 7:
        return None  # an absurdly long number
    number = np.repeat(np.arange(len(ends)), lengths)
    digit = np.arange(chars.size) - starts[number]
    values = np.bincount(number, (chars & 0x1F) << (5 * digit), minlength=len(ends)).astype(np.int64)
    negative = (chars[ends] & 0x10) != 0
    values[negative] |= -1 << (5 * lengths[negative])
    for parity in (1, 2):  # from the fourth on, each is a difference to the run two before
        if len(values) > parity:
            values[parity::2] = np.cumsum(values[parity::2])
    return values


def _decode_runs(runs: np.ndarray, height: int, width: int) -> np.ndarray:
    """(height, width) bool mask (column-major like pycocotools' decode) from run lengths, zeros first.
    Only the set runs are written into a zero-filled frame, so a small object of a large image costs its
    own pixels, not the 16 million of a 4,000 x 4,000 frame (the allocation is lazily zeroed memory)."""
    flat = np.zeros(height * width, bool)
    ends = np.cumsum(runs)
    if ends.size and ends[-1] != height * width:
        raise ValueError(f"RLE runs cover {int(ends[-1])} pixels, not {height} x {width}")
    for start, stop in zip(ends[0::2], ends[1::2]):
        flat[start:stop] = True
    return flat.reshape(width, height).T


def bbox_xywh(mask: np.ndarray) -> list:
    """Tight box [x, y, width, height] in pixels (COCO convention); zeros for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return [0, 0, 0, 0]
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def component_containing(mask: np.ndarray, seed: tuple) -> np.ndarray:
    """The 4-connected component of ``mask`` that contains ``seed`` (empty if the seed is outside)."""
    labels, _ = ndimage.label(mask)
    seed_label = labels[seed]
    return labels == seed_label if seed_label else np.zeros_like(mask, dtype=bool)


def resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D mask by index arithmetic (no interpolation library needed)."""
    rows = (np.arange(height) * mask.shape[0] / height).astype(int)
    cols = (np.arange(width) * mask.shape[1] / width).astype(int)
    return mask[rows[:, None], cols[None, :]]


def coverage_on_grid(mask: np.ndarray, grid_hw: tuple) -> np.ndarray:
    """Fraction of each patch-grid cell that ``mask`` covers, as float32 (grid_h, grid_w)."""
    gh, gw = grid_hw
    rows = np.minimum((np.arange(mask.shape[0]) * gh) // mask.shape[0], gh - 1)
    cols = np.minimum((np.arange(mask.shape[1]) * gw) // mask.shape[1], gw - 1)
    cells = (rows[:, None] * gw + cols[None, :]).ravel()
    sums = np.bincount(cells, weights=mask.ravel().astype(np.float64), minlength=gh * gw)
    counts = np.bincount(cells, minlength=gh * gw)
    return (sums / np.maximum(counts, 1)).reshape(gh, gw).astype(np.float32)


def mask_identity(image_id: str, mask: np.ndarray) -> str:
    """A key naming one mask of one image by its pixels, not its position in a list: the same mask gets the
    same key in every run, so the user's decisions about it (split assignments, pins) follow it."""
    return rle_identity(image_id, encode_rle(np.asarray(mask, bool)))


# -- large images: per-mask work on the mask's bounding box ---------------------------------------------------
# A mask of a dense 4,000 x 4,000 image covers a few hundred of its 16 million pixels; encoding, measuring or
# resizing it on the whole frame costs ~16 MB and tens of milliseconds per mask, thousands of times.


def mask_box(mask: np.ndarray):
    """(rows, cols) slices of the tight bounding box of a 2-D mask, or None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _column_major_runs(flat: np.ndarray, before: int, after: int) -> list:
    """COCO run lengths (zeros first) of ``before`` zeros, the bool sequence ``flat``, ``after`` zeros."""
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.r_[0, changes, flat.size]).tolist()
    if flat[0]:
        runs.insert(0, 0)
    runs[0] += before
    if len(runs) % 2:  # ends on a run of zeros: the trailing zeros extend it
        runs[-1] += after
    elif after:
        runs.append(after)
    return runs


def rle_from_crop(crop: np.ndarray, box: tuple, image_hw: tuple) -> dict:
    """:func:`encode_rle` of the full-size mask that is ``crop`` at ``box`` (rows, cols slices) and empty
    elsewhere, without making the full-size mask: equal to ``encode_rle(full)`` string for string."""
    height, width = (int(v) for v in image_hw)
    rows, cols = box
    crop = np.asarray(crop, bool)
    if not crop.any():
        counts = [height * width]
    else:
        band = np.zeros((height, crop.shape[1]), bool)  # the columns the box spans, whole height
        band[rows] = crop
        counts = _column_major_runs(band.T.ravel(), cols.start * height, (width - cols.stop) * height)
    rle = mask_utils.frPyObjects({"counts": counts, "size": [height, width]}, height, width)
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_identity(image_id: str, rle: dict) -> str:
    """:func:`mask_identity` from the mask's RLE (as :func:`encode_rle` gives it)."""
    import hashlib

    digest = hashlib.sha1(f"{rle['size']}|{rle['counts']}".encode()).hexdigest()[:16]
    return f"{image_id}:{digest}"


def mask_crop(masks, index: int) -> tuple:
    """(box, crop) of mask ``index`` of a stack: from the stack itself when it knows its masks' boxes
    (:class:`LabelMasks`, engine.state.project.RleMasks), else from the full mask. box None: empty mask."""
    if hasattr(masks, "crop"):
        return masks.crop(index)
    mask = np.asarray(masks[index], bool)
    box = mask_box(mask)
    return (None, None) if box is None else (box, mask[box])


def mask_rle(masks, index: int) -> dict:
    """:func:`encode_rle` of mask ``index`` of a stack, read or made from its crop when the stack can."""
    if hasattr(masks, "rle"):
        return masks.rle(index)
    return encode_rle(masks[index])


def coverage_of_crop(crop: np.ndarray, box: tuple, image_hw: tuple, grid_hw: tuple, values=None) -> tuple:
    """:func:`coverage_on_grid` of a full-size mask given by its crop, sparse: (flat cell indices, coverage
    fractions float32) of the cells it touches; every other cell's coverage is 0. Same values. ``values``: a float
    crop (0 outside the mask) averaged per cell instead of the mask itself."""
    gh, gw = grid_hw
    height, width = image_hw
    rows, cols = box
    cell_rows = np.minimum((np.arange(rows.start, rows.stop) * gh) // height, gh - 1)
    cell_cols = np.minimum((np.arange(cols.start, cols.stop) * gw) // width, gw - 1)
    local = (cell_rows - cell_rows[0])[:, None] * (cell_cols[-1] - cell_cols[0] + 1) + (cell_cols - cell_cols[0])
    span_w = int(cell_cols[-1] - cell_cols[0] + 1)
    weights = np.asarray(crop, bool) if values is None else np.where(crop, values, 0.0)
    sums = np.bincount(local.ravel(), weights=weights.ravel().astype(np.float64))
    touched = np.flatnonzero(sums)
    grid_r, grid_c = cell_rows[0] + touched // span_w, cell_cols[0] + touched % span_w
    # pixels per cell over the whole image, as coverage_on_grid counts them
    pixels_r = np.bincount(np.minimum((np.arange(height) * gh) // height, gh - 1), minlength=gh)
    pixels_c = np.bincount(np.minimum((np.arange(width) * gw) // width, gw - 1), minlength=gw)
    area = pixels_r[grid_r] * pixels_c[grid_c]
    return grid_r * gw + grid_c, (sums[touched] / np.maximum(area, 1)).astype(np.float32)


def resize_crop_nearest(crop: np.ndarray, box: tuple, image_hw: tuple, out_hw: tuple) -> tuple:
    """:func:`resize_nearest` of a full-size mask given by its crop: (box in the output, output crop), the
    same pixels the full resize gives; (None, None) when no output pixel samples the box."""
    rows, cols = box
    src_rows = (np.arange(out_hw[0]) * image_hw[0] / out_hw[0]).astype(int)
    src_cols = (np.arange(out_hw[1]) * image_hw[1] / out_hw[1]).astype(int)
    picked_r = np.flatnonzero((src_rows >= rows.start) & (src_rows < rows.stop))
    picked_c = np.flatnonzero((src_cols >= cols.start) & (src_cols < cols.stop))
    if picked_r.size == 0 or picked_c.size == 0:
        return None, None
    small = np.asarray(crop, bool)[(src_rows[picked_r] - rows.start)[:, None],
                                   (src_cols[picked_c] - cols.start)[None, :]]
    out_box = (slice(int(picked_r[0]), int(picked_r[-1]) + 1), slice(int(picked_c[0]), int(picked_c[-1]) + 1))
    return out_box, small


# -- mask stacks that are not (n, H, W) arrays ----------------------------------------------------------------


class LabelMasks:
    """A stack of (n, H, W) boolean masks held as one int32 label map: mask ``i`` is ``labels == ids[i]``.

    Why: a dense image holds thousands of objects; n full-resolution bool masks of a 4000 x 4000 image cost
    16 MB each (tens of GB for a crowded image), one label map 64 MB. It behaves like the array for what the
    pipeline does with mask stacks: ``len``, ``shape``, iteration and ``[i]`` give one full-resolution mask
    at a time (made on demand from the object's bounding box), ``[index array / bool array / slice]`` gives a
    ``LabelMasks`` subset sharing the map, and ``np.asarray`` materialises the whole stack (small images only).
    ``crop(i)`` and ``rle(i)`` work on the bounding box only. The label map must not be changed afterwards.
    """

    ndim = 3
    dtype = np.dtype(bool)

    def __init__(self, labels: np.ndarray, ids=None, boxes: list | None = None):
        self.labels = np.asarray(labels, np.int32)
        self.ids = (np.arange(1, int(self.labels.max(initial=0)) + 1, dtype=np.int32) if ids is None
                    else np.asarray(ids, np.int32).reshape(-1))
        # one bounding slice per label value (None for a value not present), shared by every subset
        self._boxes = boxes if boxes is not None else ndimage.find_objects(self.labels)

    @classmethod
    def from_stack(cls, masks) -> LabelMasks:
        """The label map of a stack of masks (an (n, H, W) bool array, or any stack with ``shape`` and
        ``crop(i)``: the RLE masks read back from a project), ids 1..n in its order; where masks overlap, the
        later one wins."""
        labels = np.zeros(masks.shape[1:], np.int32)
        for position in range(len(masks)):
            if isinstance(masks, np.ndarray):
                labels[masks[position]] = position + 1
                continue
            box, crop = masks.crop(position)
            if box is not None:
                labels[box][crop] = position + 1
        return cls(labels, np.arange(1, len(masks) + 1, dtype=np.int32))

    @property
    def shape(self) -> tuple:
        return (len(self.ids), *self.labels.shape)

    def __len__(self) -> int:
        return len(self.ids)

    def box(self, position: int):
        """(rows, cols) slices of the bounding box of the mask at ``position``; None when it is empty."""
        value = int(self.ids[position])
        return self._boxes[value - 1] if 0 < value <= len(self._boxes) else None

    def crop(self, position: int) -> tuple:
        """(box, bool crop) of the mask at ``position``; (None, None) when it is empty."""
        box = self.box(position)
        return (None, None) if box is None else (box, self.labels[box] == self.ids[position])

    def rle(self, position: int) -> dict:
        """:func:`encode_rle` of the mask at ``position``, from its bounding box."""
        box, crop = self.crop(position)
        if box is None:
            return rle_from_crop(np.zeros((0, 0), bool), (slice(0, 0), slice(0, 0)), self.labels.shape)
        return rle_from_crop(crop, box, self.labels.shape)

    def mask(self, position: int) -> np.ndarray:
        """The full-resolution bool mask at ``position`` in the stack."""
        out = np.zeros(self.labels.shape, bool)
        box, crop = self.crop(position)
        if box is not None:
            out[box] = crop
        return out

    def painted(self, values, dtype=np.uint16) -> np.ndarray:
        """(H, W) map holding ``values[i]`` on mask ``i`` and 0 elsewhere, in one lookup (no per-mask pass)."""
        lookup = np.zeros(max(int(self.labels.max(initial=0)), int(self.ids.max(initial=0))) + 1, dtype)
        lookup[self.ids] = np.asarray(values, dtype)
        return lookup[self.labels]

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self.mask(int(index) + len(self) if index < 0 else int(index))
        if isinstance(index, tuple):
            raise TypeError("LabelMasks supports one index (an int, a slice, an index or bool array)")
        return LabelMasks(self.labels, self.ids[index], self._boxes)

    def __iter__(self):
        for position in range(len(self)):
            yield self.mask(position)

    def __array__(self, dtype=None, copy=None):
        stack = np.zeros(self.shape, bool)
        for position in range(len(self)):
            stack[position] = self.mask(position)
        return stack if dtype is None else stack.astype(dtype)

    def copy(self) -> np.ndarray:
        return np.asarray(self)


class SparseMasks:
    """A stack of (n, gh, gw) boolean masks on a small grid (patch masks), held as each mask's flat cell
    indices: mask ``i`` is ``cells[offsets[i]:offsets[i + 1]]``.

    Why: the patch masks of 12,000 objects on a 600 x 600 patch grid are 4.3 GB as an array and a few MB as
    cell lists. Indexing like the array: ``[i]`` gives one (gh, gw) mask, ``[index array / bool array /
    slice]`` a ``SparseMasks`` subset, ``np.asarray`` the whole stack (small stacks only).
    """

    ndim = 3
    dtype = np.dtype(bool)

    def __init__(self, offsets, cells, grid_hw: tuple):
        self.offsets = np.asarray(offsets, np.int64).reshape(-1)
        self.cells = np.asarray(cells, np.int64).reshape(-1)
        self.grid_hw = tuple(int(v) for v in grid_hw)
        if self.offsets.size == 0 or self.offsets[0] != 0 or self.offsets[-1] != self.cells.size \
                or (np.diff(self.offsets) < 0).any():
            raise ValueError("SparseMasks: offsets must rise from 0 to the number of cells")
        if len(self.grid_hw) != 2 or (self.cells.size and not 0 <= self.cells.min() <= self.cells.max()
                                      < self.grid_hw[0] * self.grid_hw[1]):
            raise ValueError(f"SparseMasks: cell indices outside the {self.grid_hw} grid")

    @classmethod
    def from_pairs(cls, mask_index: np.ndarray, cells: np.ndarray, n: int, grid_hw: tuple) -> SparseMasks:
        """From (mask, cell) pairs in any order, duplicates allowed."""
        pairs = np.unique(np.asarray(mask_index, np.int64) * (grid_hw[0] * grid_hw[1]) + np.asarray(cells, np.int64))
        mask_index, cells = np.divmod(pairs, grid_hw[0] * grid_hw[1])
        offsets = np.r_[0, np.cumsum(np.bincount(mask_index, minlength=n))]
        return cls(offsets, cells, grid_hw)

    @classmethod
    def from_dense(cls, stack: np.ndarray) -> SparseMasks:
        stack = np.asarray(stack, bool)
        n, gh, gw = stack.shape
        mask_index, cells = np.nonzero(stack.reshape(n, gh * gw))
        return cls(np.r_[0, np.cumsum(np.bincount(mask_index, minlength=n))], cells, (gh, gw))

    @property
    def shape(self) -> tuple:
        return (len(self), *self.grid_hw)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def cells_of(self, position: int) -> np.ndarray:
        return self.cells[self.offsets[position]:self.offsets[position + 1]]

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            position = int(index) + len(self) if index < 0 else int(index)
            out = np.zeros(self.grid_hw[0] * self.grid_hw[1], bool)
            out[self.cells_of(position)] = True
            return out.reshape(self.grid_hw)
        if isinstance(index, tuple):
            raise TypeError("SparseMasks supports one index (an int, a slice, an index or bool array)")
        chosen = np.atleast_1d(np.arange(len(self))[index])
        parts = [self.cells_of(int(i)) for i in chosen]
        sizes = [len(p) for p in parts]
        cells = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return SparseMasks(np.r_[0, np.cumsum(sizes, dtype=np.int64)], cells, self.grid_hw)

    def __iter__(self):
        for position in range(len(self)):
            yield self[position]

    def __array__(self, dtype=None, copy=None):
        stack = np.zeros((len(self), self.grid_hw[0] * self.grid_hw[1]), bool)
        rows = np.repeat(np.arange(len(self)), np.diff(self.offsets))
        stack[rows, self.cells] = True
        stack = stack.reshape(self.shape)
        return stack if dtype is None else stack.astype(dtype)

    def copy(self) -> np.ndarray:
        return np.asarray(self)


# An (n, H, W) bool mask stack: an array, or a class that indexes like one without holding n full grids
# (LabelMasks, SparseMasks, engine.state.project.RleMasks). Any, because those implement only what the callers
# use (len, shape, indexing, np.asarray), not the whole ndarray interface.
MaskStack = Any


@dataclass
class Proposals:
    """The masks of one image with their per-mask fields kept in lockstep.

    ``masks`` and ``patch_masks`` are (n, H, W) / (n, gh, gw) bool arrays, or stacks that index like them
    without holding n full grids: ``dense`` gives an engine.masks.LabelMasks (one label map) and
    engine.masks.SparseMasks (each mask's cell list); a large proposals file is read back as
    engine.state.project.RleMasks and SparseMasks. ``filter`` keeps each kind as it is.
    """

    masks: MaskStack  # (n, H, W) bool, full image resolution (or LabelMasks / RleMasks)
    patch_masks: MaskStack  # (n, gh, gw) bool, on the feature grid (or SparseMasks)
    scores: np.ndarray  # (n,) float32, feature contrast of the mask in [0, 1]
    sources: list = field(default_factory=list)  # e.g. "ncut:0", "seed"

    def __len__(self) -> int:
        return len(self.scores)

    def filter(self, keep) -> Proposals:
        keep = np.asarray(keep)
        keep = np.flatnonzero(keep) if keep.dtype == bool else keep.astype(np.intp, copy=False)
        return Proposals(self.masks[keep], self.patch_masks[keep], self.scores[keep],
                         [self.sources[i] for i in keep])

    @classmethod
    def empty(cls, image_hw: tuple, grid_hw: tuple) -> Proposals:
        return cls(np.zeros((0, *image_hw), bool), np.zeros((0, *grid_hw), bool), np.zeros(0, np.float32), [])


# -- cutting an object along a drawn stroke (engine.state.object_edits.split_object; the plugin shows it first) -
STROKE_WIDTH_PIXELS = 3  # a drawn stroke's width: wide enough that no 4-connected path leaks through it
MIN_PART_PIXELS = 16  # a piece the stroke cuts off with fewer pixels is a crumb: it goes to the nearest part


def stroke_pixels(shape: tuple, stroke, width: int = STROKE_WIDTH_PIXELS) -> np.ndarray:
    """(H, W) bool: the polyline through ``stroke``'s (row, col) points drawn ``width`` pixels wide (a disk of
    that diameter along it, sampled every half pixel); parts outside the frame are left out."""
    points = np.asarray(stroke, np.float64).reshape(-1, 2)
    drawn = np.zeros(shape, bool)
    if not len(points):
        return drawn
    samples = [points[:1]]
    for start, end in zip(points[:-1], points[1:]):
        steps = max(1, int(np.ceil(2 * np.hypot(*(end - start)))))
        samples.append(start + (end - start) * np.linspace(0, 1, steps + 1)[1:, None])
    centres = np.rint(np.concatenate(samples)).astype(np.int64)
    radius = width / 2
    reach = int(np.floor(radius))
    offsets = np.array([(dr, dc) for dr in range(-reach, reach + 1) for dc in range(-reach, reach + 1)
                        if dr * dr + dc * dc <= radius * radius], np.int64)
    pixels = (centres[:, None, :] + offsets[None, :, :]).reshape(-1, 2)
    inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < shape[0]) & (pixels[:, 1] >= 0) & (pixels[:, 1] < shape[1])
    drawn[pixels[inside, 0], pixels[inside, 1]] = True
    return drawn


def split_along_stroke(labels: np.ndarray, instance_id: int, stroke, first_new_id: int,
                       width: int = STROKE_WIDTH_PIXELS, min_part: int = MIN_PART_PIXELS) -> dict | None:
    """Object ``instance_id`` of a label map cut along a stroke (``stroke``: (row, col) points, pixels); None when
    the stroke cuts no piece of it into two parts of at least ``min_part`` pixels. ``labels`` is not changed.

    The parts are the pieces the stroke cuts a piece of the object into; every other pixel of the object (the
    stroke's own, crumbs it cut off, pieces it did not cut) goes to the nearest part, so no pixel is lost. The
    largest part keeps ``instance_id``, the others take ``first_new_id``, ``first_new_id + 1``, ... (larger
    first). Returns instance_id, added (those new ids), area and box (x0, y0, x1, y1, exclusive) of the part
    that kept the id, and the changed window of the label map: changed_box (y0, x0, y1, x1) with the labels
    ``before`` and ``after`` in it (``after`` of a wider type when the new ids need one)."""
    mask = np.asarray(labels) == int(instance_id)
    box = mask_box(mask)
    if box is None:
        return None
    origin = np.array([box[0].start, box[1].start], np.float64)
    parts = _stroke_parts(mask[box], np.asarray(stroke, np.float64).reshape(-1, 2) - origin, width, min_part)
    return None if parts is None else parts_record(labels, instance_id, box, parts, first_new_id)


def parts_record(labels: np.ndarray, instance_id: int, box: tuple, parts: np.ndarray, first_new_id: int) -> dict:
    """What splitting object ``instance_id`` into ``parts`` changes (see :func:`split_along_stroke`): ``parts`` is
    the (rows, cols) window ``box`` of the label map numbered 0 (not the object), 1 (the part keeping the id),
    2, 3, ... (the parts taking ``first_new_id``, ``first_new_id + 1``, ...)."""
    count = int(parts.max())
    added = list(range(int(first_new_id), int(first_new_id) + count - 1))
    before = np.asarray(labels)[box].copy()
    dtype = np.promote_types(before.dtype, np.min_scalar_type(max(added, default=0)))
    ids = np.array([0, int(instance_id), *added], dtype)
    after = np.where(parts > 0, ids[parts], before.astype(dtype))
    rows, cols = np.nonzero(parts == 1)
    top, left = box[0].start, box[1].start
    return {"instance_id": int(instance_id), "added": added, "area": int(len(rows)),
            "box": (left + int(cols.min()), top + int(rows.min()), left + int(cols.max()) + 1,
                    top + int(rows.max()) + 1),
            "changed_box": (top, left, box[0].stop, box[1].stop), "before": before, "after": after}


def _stroke_parts(mask: np.ndarray, stroke: np.ndarray, width: int, min_part: int) -> np.ndarray | None:
    """(H, W) int32 parts of a mask cut along a stroke (see :func:`split_along_stroke`): 0 off the mask, 1..n
    the parts, largest first; None when the stroke cuts no piece of it in two."""
    cut = mask & ~stroke_pixels(mask.shape, stroke, width)
    pieces, _ = ndimage.label(mask)
    bits, count = ndimage.label(cut)
    sizes = np.bincount(bits.ravel(), minlength=count + 1)
    piece_of = np.zeros(count + 1, np.int64)
    piece_of[bits.ravel()] = pieces.ravel()  # each bit lies inside one piece of the mask
    large = [k for k in range(1, count + 1) if sizes[k] >= min_part]
    per_piece = np.bincount(piece_of[large], minlength=int(pieces.max()) + 1)
    seeds = sorted((k for k in large if per_piece[piece_of[k]] >= 2), key=lambda k: (-int(sizes[k]), k))
    if len(seeds) < 2:
        return None
    number = np.zeros(count + 1, np.int32)
    number[seeds] = np.arange(1, len(seeds) + 1, dtype=np.int32)
    seeded = number[bits]
    _, (rows, cols) = ndimage.distance_transform_edt(seeded == 0, return_indices=True)
    return np.where(mask, seeded[rows, cols], 0).astype(np.int32)
