"""Objects' centres learnt from the folder's lone objects, and groups of touching objects cut at them.

Two or three touching objects of one kind are often found as one mask (about 50 of feral_cats' 195 top
objects). What recurs across the folder tells them apart: its compact final objects (solidity >=
``LONE_SOLIDITY``: mostly one object each) teach a ridge regression from a patch's token, and the mean of its
3 x 3 neighbours, to the patch's depth inside its object (distance to the object's edge over the object's
deepest; a centre heat map as Panoptic-DeepLab predicts one, fitted in a second on a CPU); the objects the user
reviewed in a correction teach it too, whatever their shape, weighted above the lone ones. Inside a concave
object (solidity < ``COMPACT_SOLIDITY``) the predicted depth's peaks are its objects' centres; two or more cut it
by a watershed of that depth. A compact object with two or more is cut where its pieces agree with the predicted
depth better than it does whole (two touching objects side by side).

The model is used only where it predicts the depth of objects it did not see (R^2 over held-out images' objects,
grouped 5-fold cross-validation, >= ``MIN_HELD_OUT_R2``, from ``MIN_EXAMPLES`` lone objects or more): on
real-dev's 11 mixed photos (24-29 lone objects of unlike kinds) it reaches 0.01-0.09 and cuts nothing; on the
demo's 15 mixed photos (44) 0.21 (a gate at 0.2 let it split rockets lengthwise); on feral_cats (300 lone cats)
0.36-0.43. A geometric waist cut, which needs no model, cut people and chairs as well and halved real-dev's mask
AP50 (docs/decisions.md#d-centres). Pure functions over arrays and scikit-learn; no torch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.segmentation import watershed
from skimage.transform import resize
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold, cross_val_score

from engine.masks import LabelMasks, coverage_of_crop
from engine.method.instances import COMPACT_SOLIDITY, compactness_weight, mask_solidity

LONE_SOLIDITY = 0.8  # an object this compact is taken as one object: an example of what a centre looks like
MIN_EXAMPLE_PIXELS = 50  # smaller lone objects cover a patch or two: no depth profile to learn
MIN_EXAMPLES = 50  # lone objects needed before a model is fitted (5 folds of 10; the demo's 15 mixed photos hold 44)
MAX_EXAMPLES = 600  # lone objects kept (a seeded reservoir sample)
MAX_CELLS_PER_EXAMPLE = 48  # patches kept of one (a seeded sample): at most 28,800 rows, 44 MB in float16
MIN_HELD_OUT_R2 = 0.3  # real-dev 0.01-0.09 and the demo 0.21 (mixed photos), feral_cats 0.36-0.43, generated 0.58+
ALPHAS = (100.0, 1000.0, 3000.0, 10000.0)  # ridge strengths tried; the best held-out R^2 is kept
PEAK_DEPTH = 0.4  # a centre's predicted depth (1 = an object's deepest point); 0.3-0.5 measured on feral_cats
MIN_PIECE_SHARE = 0.1  # a smaller piece goes to its neighbours: a leg or an ear is no object (0.08-0.15 measured)
CENTRE_SPACING = 1.0  # two centres at least this many typical lone radii apart (touching ones lie 2 apart; 0.25-1.5)
# in a closer look's crop: a lone object fills its crop, a group's members a half or a third of theirs (0.4-1 measured)
CROP_CENTRE_SPACING = 0.5
CUT_AGREEMENT_MARGIN = 0.0  # a compact object is cut where its pieces agree better at all (0.1, 0.05, -0.05 measured)
AGREEMENT_FLOOR = 0.05  # an object whose depth disagrees with the model's keeps this share of its score (order kept)


def patch_inputs(tokens: np.ndarray, grid_hw: tuple) -> np.ndarray:
    """(N, 2D) float32 regression inputs: each patch token centred on the image's mean, beside the mean of its
    3 x 3 neighbourhood (where in an object a patch lies shows in its surroundings)."""
    gh, gw = grid_hw
    grid = np.asarray(tokens, np.float32).reshape(gh, gw, -1)
    grid = grid - grid.mean(axis=(0, 1))
    context = ndimage.uniform_filter(grid, size=(3, 3, 1), mode="nearest")
    return np.concatenate([grid, context], axis=2).reshape(gh * gw, -1)


def object_depth(mask: np.ndarray) -> np.ndarray:
    """A bool mask's depth: distance to its edge (the image's border counts as an edge) over its deepest."""
    depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    return (depth / max(float(depth.max()), 1e-6)).astype(np.float32)


def depth_targets(crop: np.ndarray, box: tuple, image_hw: tuple, grid_hw: tuple) -> tuple:
    """(cells, depths) of a mask given by its bounding-box crop: the patches at least half inside it and its mean
    depth over their pixels."""
    cells, cover = coverage_of_crop(crop, box, image_hw, grid_hw)
    _, depth_share = coverage_of_crop(crop, box, image_hw, grid_hw, values=object_depth(crop))  # same cells: depth > 0
    inside = cover >= 0.5
    return cells[inside], np.clip(depth_share[inside] / cover[inside], 0.0, 1.0)


class Reservoir:
    """At most ``capacity`` of the things offered, each kept with the same chance (reservoir sampling, seeded)."""

    def __init__(self, capacity: int, rng: np.random.Generator):
        self.capacity, self.rng = capacity, rng
        self.items: list = []
        self.seen = 0

    def slot(self) -> int | None:
        """Where the next thing offered goes, or None when it is left out."""
        self.seen += 1
        if len(self.items) < self.capacity:
            return len(self.items)
        slot = int(self.rng.integers(self.seen))
        return slot if slot < self.capacity else None

    def put(self, slot: int, item) -> None:
        if slot == len(self.items):
            self.items.append(item)
        else:
            self.items[slot] = item


class CentreExamples:
    """The folder's lone objects as regression examples, gathered one image at a time; and the objects the user
    reviewed, weighted above them (each is known to be one object, whatever its shape). At most ``MAX_EXAMPLES``
    of each, reservoir samples seeded by ``seed`` (the same folder gives the same sample, with or without the
    user's). An example: ((cells, 2D) float16 inputs, (cells,) depths, its deepest depth / sqrt(image area),
    its weight)."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._lone = Reservoir(MAX_EXAMPLES, np.random.default_rng(seed))
        self._reviewed = Reservoir(MAX_EXAMPLES, np.random.default_rng(seed + 1))
        self._known = Reservoir(MAX_EXAMPLES, np.random.default_rng(seed + 2))

    @property
    def items(self) -> list:
        """The lone objects' examples."""
        return self._lone.items

    @property
    def seen(self) -> int:
        """Lone objects offered so far."""
        return self._lone.seen

    @property
    def reviewed(self) -> list:
        """The user's objects' examples."""
        return self._reviewed.items

    def add(self, tokens: np.ndarray, grid_hw: tuple, masks: LabelMasks, solidity: dict) -> None:
        """The image's objects of solidity >= LONE_SOLIDITY and MIN_EXAMPLE_PIXELS or more."""
        chosen = [position for position, object_id in enumerate(masks.ids)
                  if solidity.get(int(object_id), 0.0) >= LONE_SOLIDITY]
        self._offer(self._lone, tokens, grid_hw, masks, chosen, 1.0)

    def add_reviewed(self, tokens: np.ndarray, grid_hw: tuple, masks: LabelMasks, weight: float) -> None:
        """Objects the user reviewed (a correction's): each of MIN_EXAMPLE_PIXELS or more, of any shape, counted
        ``weight`` times a lone object in the fit."""
        self._offer(self._reviewed, tokens, grid_hw, masks, range(len(masks)), weight)

    def add_known_group(self, tokens: np.ndarray, grid_hw: tuple, masks: LabelMasks) -> None:
        """The members of a known group (engine.method.known_groups: lone objects pasted side by side), each of
        MIN_EXAMPLE_PIXELS or more, counted as a lone object in the fit."""
        self._offer(self._known, tokens, grid_hw, masks, range(len(masks)), 1.0)

    @property
    def known(self) -> list:
        """The known groups' members' examples."""
        return self._known.items

    def all(self) -> list:
        """Every example: the sampled lone objects, the user's, then the known groups' members."""
        return self.items + self.reviewed + self.known

    @staticmethod
    def _offer(reservoir: Reservoir, tokens, grid_hw, masks: LabelMasks, positions, weight: float) -> None:
        inputs = None
        for position in positions:
            box, crop = masks.crop(position)
            if box is None or crop.sum() < MIN_EXAMPLE_PIXELS:
                continue
            slot = reservoir.slot()
            if slot is None:
                continue
            cells, depths = depth_targets(crop, box, masks.labels.shape, grid_hw)
            if len(cells) > MAX_CELLS_PER_EXAMPLE:  # a large object's patches, thinned: memory and fitting bounded
                chosen = np.sort(reservoir.rng.choice(len(cells), MAX_CELLS_PER_EXAMPLE, replace=False))
                cells, depths = cells[chosen], depths[chosen]
            if not len(cells):
                continue
            inputs = patch_inputs(tokens, grid_hw) if inputs is None else inputs
            radius = float(ndimage.distance_transform_edt(np.pad(crop, 1)).max())
            reservoir.put(slot, (inputs[cells].astype(np.float16), depths.astype(np.float32),
                                 radius / float(np.sqrt(masks.labels.size)), weight))


@dataclass
class CentreModel:
    """A fitted depth regression, the folder's typical lone object's radius (a share of sqrt(image area)) and how
    many of those radii apart two centres lie at least."""

    ridge: Ridge
    radius_share: float
    spacing: float = CENTRE_SPACING

    def depth_map(self, tokens: np.ndarray, grid_hw: tuple, image_hw: tuple) -> np.ndarray:
        """(H, W) float32 predicted depth, bilinear from the patch grid."""
        grid = self.ridge.predict(patch_inputs(tokens, grid_hw)).reshape(grid_hw).astype(np.float32)
        return resize(grid, image_hw, order=1, preserve_range=True, anti_aliasing=False).astype(np.float32)

    def min_centre_distance(self, image_hw: tuple) -> int:
        """Pixels between two centres: ``spacing`` times the typical lone object's radius in this image."""
        return max(2, int(self.spacing * self.radius_share * np.sqrt(image_hw[0] * image_hw[1])))


@dataclass
class CentreFit:
    """What fitting said: the model (None when not used), its held-out R^2, alpha, and the examples it had (the
    user's reviewed objects among them; the known groups' members beside them)."""

    model: CentreModel | None
    held_out_r2: float | None
    alpha: float | None
    examples: int
    reviewed: int = 0  # of the examples, the user's
    known: int = 0  # known groups' members, beside the examples

    def summary(self) -> dict:
        """For report.json and the words of engine.orchestration.outcome.describe_group_cut (thresholds included)."""
        return {"used": self.model is not None, "lone_objects": self.examples, "reviewed_objects": self.reviewed,
                "known_group_members": self.known, "alpha": self.alpha,
                "held_out_r2": None if self.held_out_r2 is None else round(self.held_out_r2, 3),
                "min_lone_objects": MIN_EXAMPLES, "min_held_out_r2": MIN_HELD_OUT_R2}


def fit_centre_model(examples: CentreExamples, spacing: float = CENTRE_SPACING, gate: bool | None = None) -> CentreFit:
    """The ridge strength of ``ALPHAS`` with the best held-out R^2 over the lone and the user's objects (5 folds,
    each object's patches in one fold; the user's objects weighted as they were added), refitted on every example,
    known groups' members included, its centres ``spacing`` typical radii apart; no model under MIN_EXAMPLES
    objects or below MIN_HELD_OUT_R2. The known groups are left out of the gate: pasted from the lone objects, they
    would put copies of a held-out object in the training folds, and they are no new kind of object.
    ``gate``: decided elsewhere for this folder (True: a model whatever its R^2, False: none; a second scale follows
    its first run's, docs/decisions.md#d-two-scales); None: by MIN_HELD_OUT_R2."""
    scored = examples.items + examples.reviewed
    count, reviewed, known = len(scored), len(examples.reviewed), len(examples.known)
    if count < MIN_EXAMPLES or gate is False:
        return CentreFit(None, None, None, count, reviewed, known)
    x, y, weights = _rows(scored)
    groups = np.concatenate([np.full(len(item[1]), i) for i, item in enumerate(scored)])
    folds = GroupKFold(n_splits=5)
    held_out = {alpha: float(cross_val_score(Ridge(alpha=alpha), x, y, groups=groups, cv=folds, scoring="r2",
                                             params={"sample_weight": weights}).mean())
                for alpha in ALPHAS}
    alpha = max(ALPHAS, key=lambda a: held_out[a])
    if held_out[alpha] < MIN_HELD_OUT_R2 and not gate:
        return CentreFit(None, held_out[alpha], alpha, count, reviewed, known)
    x, y, weights = _rows(examples.all())
    model = CentreModel(Ridge(alpha=alpha).fit(x, y, sample_weight=weights),
                        float(np.median([item[2] for item in scored])), spacing)
    return CentreFit(model, held_out[alpha], alpha, count, reviewed, known)


def _rows(items: list) -> tuple:
    """(inputs (N, 2D) float32, depths (N,), sample weights (N,)) of examples' patches."""
    return (np.concatenate([item[0] for item in items]).astype(np.float32),
            np.concatenate([item[1] for item in items]),
            np.concatenate([np.full(len(item[1]), item[3], np.float32) for item in items]))


def centre_pieces(mask_crop: np.ndarray, depth_crop: np.ndarray, min_distance: int) -> np.ndarray | None:
    """A bool crop cut at the predicted depth's centres: an int32 map of pieces 1..k (0 outside), or None when
    it holds fewer than two centres of PEAK_DEPTH, or fewer than two pieces of MIN_PIECE_SHARE of it."""
    peaks = peak_local_max(np.where(mask_crop, depth_crop, 0.0), min_distance=min_distance, threshold_abs=PEAK_DEPTH,
                           labels=mask_crop.astype(np.int32), exclude_border=False)
    if len(peaks) < 2:
        return None
    markers = np.zeros(mask_crop.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    pieces = watershed(-depth_crop, markers, mask=mask_crop)
    areas = np.bincount(pieces.ravel(), minlength=len(peaks) + 1)[1:]
    large = np.flatnonzero(areas >= MIN_PIECE_SHARE * mask_crop.sum()) + 1
    if len(large) < 2:
        return None
    if len(large) < len(peaks):  # the small pieces' pixels go to their large neighbours
        markers[~np.isin(markers, large)] = 0
        pieces = watershed(-depth_crop, markers, mask=mask_crop)
    return np.searchsorted(np.concatenate([[0], large]), pieces).astype(np.int32) * (pieces > 0)


def group_candidates(masks: LabelMasks, solidity: dict, skip=()) -> list:
    """Positions of the objects that may be groups: solidity under COMPACT_SOLIDITY, not in ``skip`` (ids)."""
    return [position for position, object_id in enumerate(masks.ids)
            if int(object_id) not in skip and solidity.get(int(object_id), 1.0) < COMPACT_SOLIDITY]


def cut_groups(masks: LabelMasks, classes: np.ndarray, scores: np.ndarray, depth: np.ndarray, min_distance: int,
               candidates, others=()) -> tuple:
    """The objects at ``candidates`` (positions: concave ones) cut at their centres, and those at ``others`` where
    their pieces agree with the predicted depth better than they do whole (:func:`pieces_agree_better`: a compact
    pair of touching objects), by :func:`cut_where`. Returns (masks, classes, scores, objects cut)."""
    def pieces_at(position: int, box: tuple, crop: np.ndarray):
        if position not in candidates and position not in others:
            return None
        return agreeing_pieces(crop, depth[box], min_distance, concave=position in candidates)

    return cut_where(masks, classes, scores, pieces_at)


def cut_in_crops(masks: LabelMasks, classes: np.ndarray, scores: np.ndarray, crops: dict, model: CentreModel) -> tuple:
    """The objects at the positions of ``crops`` ({position: (window (x0, y0, x1, y1) holding the object, the
    window's patch tokens, their grid_hw)}: a closer look's crops) cut at the centres ``model`` (fitted on such
    crops) predicts from the window's own tokens, a concave object wherever it holds two, a compact one where its
    pieces agree better (:func:`agreeing_pieces`), by :func:`cut_where`. A small object in a group is a few patches
    of the whole image, too few to hold a centre, and 20-40x more in its crop. Returns (masks, classes, scores,
    objects cut)."""
    def pieces_at(position: int, box: tuple, crop: np.ndarray):
        if position not in crops:
            return None
        (x0, y0, x1, y1), tokens, grid_hw = crops[position]
        own = np.zeros((y1 - y0, x1 - x0), bool)  # the object in its window
        inside = (slice(box[0].start - y0, box[0].stop - y0), slice(box[1].start - x0, box[1].stop - x0))
        own[inside] = crop
        depth = model.depth_map(tokens, grid_hw, own.shape)
        pieces = agreeing_pieces(own, depth, model.min_centre_distance(own.shape),
                                 concave=mask_solidity(own) < COMPACT_SOLIDITY)
        return None if pieces is None else pieces[inside]

    return cut_where(masks, classes, scores, pieces_at)


def agreeing_pieces(mask_crop: np.ndarray, depth_crop: np.ndarray, min_distance: int, concave: bool):
    """:func:`centre_pieces` of a concave object; of a compact one only where they agree with the depth better
    than it does whole (:func:`pieces_agree_better`); else None."""
    pieces = centre_pieces(mask_crop, depth_crop, min_distance)
    if pieces is not None and not concave and not pieces_agree_better(mask_crop, depth_crop, pieces):
        return None
    return pieces


def cut_where(masks: LabelMasks, classes: np.ndarray, scores: np.ndarray, pieces_at) -> tuple:
    """Every object cut where ``pieces_at(position, box, bool crop)`` gives its pieces (an int32 map of the box,
    1..k, 0 outside; None: kept whole); each piece takes its object's class and score with the object's
    compactness weight (min(1, solidity / COMPACT_SOLIDITY)) replaced by its own, and every object is re-ranked,
    best first. Returns (masks, classes, scores, objects cut)."""
    labels = masks.labels.copy()
    next_id = int(max(labels.max(initial=0), masks.ids.max(initial=0))) + 1
    kept: list = []  # (id, class, score) of every object and piece
    cut = 0
    for position, object_id in enumerate(masks.ids):
        box, crop = masks.crop(position)
        pieces = pieces_at(position, box, crop) if box is not None else None
        if pieces is None:
            kept.append((int(object_id), classes[position], float(scores[position])))
            continue
        cut += 1
        whole = compactness_weight(mask_solidity(crop))
        for piece in range(1, int(pieces.max()) + 1):
            inside = pieces == piece
            labels[box][inside] = next_id
            kept.append((next_id, classes[position], float(scores[position]) * compactness_weight(mask_solidity(inside))
                         / whole))
            next_id += 1
    if not cut:
        return masks, classes, scores, 0
    ids = np.array([k[0] for k in kept], np.int32)
    out_classes = np.array([k[1] for k in kept])
    out_scores = np.array([k[2] for k in kept], np.float32)
    order = np.argsort(-out_scores, kind="stable")
    return LabelMasks(labels, ids[order]), out_classes[order], out_scores[order], cut


def pieces_agree_better(mask_crop: np.ndarray, depth_crop: np.ndarray, pieces: np.ndarray) -> bool:
    """Whether an object's pieces (:func:`centre_pieces`) agree with the predicted depth, on average weighted by
    area, by more than CUT_AGREEMENT_MARGIN better than the whole object does (:func:`depth_agreement`): two
    touching objects whose union is compact (solidity above COMPACT_SOLIDITY) are each deepest where the model sees
    a centre."""
    areas = np.bincount(pieces.ravel())[1:]
    agreements = [depth_agreement(pieces == piece, depth_crop) for piece in range(1, len(areas) + 1)]
    return float(np.average(agreements, weights=areas)) > depth_agreement(mask_crop, depth_crop) + CUT_AGREEMENT_MARGIN


def depth_agreement(mask_crop: np.ndarray, depth_crop: np.ndarray) -> float:
    """Correlation, over an object's pixels, of its own depth with the depth the model predicts there: near 1 for
    an object shaped as the folder's lone objects are (deepest where the model sees a centre), low or negative
    for a group, a part, or a background region. 0 under 10 pixels or where either depth is flat."""
    own, predicted = object_depth(mask_crop)[mask_crop], depth_crop[mask_crop]
    if own.size < 10 or own.std() < 1e-6 or predicted.std() < 1e-6:
        return 0.0
    return float(np.corrcoef(own, predicted)[0, 1])


def rank_by_depth_agreement(masks: LabelMasks, classes: np.ndarray, scores: np.ndarray, depth: np.ndarray,
                            skip=()) -> tuple:
    """Each object's score times max(AGREEMENT_FLOOR, :func:`depth_agreement`), best first; the objects ``skip``
    (ids: the user's, carried from a correction) keep theirs. Returns (masks, classes, scores)."""
    factors = []
    for position, object_id in enumerate(masks.ids):
        box, crop = masks.crop(position)
        factors.append(1.0 if int(object_id) in skip or box is None
                       else max(AGREEMENT_FLOOR, depth_agreement(crop, depth[box])))
    scores = (np.asarray(scores, np.float32) * np.asarray(factors, np.float32)).astype(np.float32)
    order = np.argsort(-scores, kind="stable")
    return masks[order], np.asarray(classes)[order], scores[order]
