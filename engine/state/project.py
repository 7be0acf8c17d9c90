"""The project folder: all state of a run lives here, written atomically, never in globals.

ARCHITECTURE.md ("Project folder") documents the layout; this module knows its paths, the schema version,
the lock, stable COCO image ids and the per-image proposal / prediction files. The user's own work
(categories.json, assignments.json, corrections/) is handled by engine.state.corrections and engine.state.review.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import zipfile
import zlib
from pathlib import Path

import numpy as np

from engine.atomic import (
    ProjectFileError,
    atomic_write_bytes,
    atomic_write_json,
    read_json,
    remove_stale_temporary_files,
)
from engine.io.coco_validation import rle_problem
from engine.masks import LabelMasks, Proposals, SparseMasks, decode_rle, mask_box, mask_rle
from engine.method.features import dequantise_rows, quantise_rows
from engine.state.schema import (
    check_project_config,
    check_user_files,
    plain_name,
    read_clusters,
    read_derived_or_none,
    read_images,
    rerun_hint,
)

SCHEMA_VERSION = 1


class ProjectLockedError(RuntimeError):
    pass


class Project:
    """Paths and small readers/writers of one project folder."""

    def __init__(self, root):
        self.root = Path(root).expanduser().resolve()

    # -- paths -------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / "project.json"

    @property
    def images_path(self) -> Path:
        return self.root / "images.json"

    @property
    def report_path(self) -> Path:
        return self.root / "report.json"

    @property
    def features_dir(self) -> Path:
        return self.root / "features"

    @property
    def proposals_dir(self) -> Path:
        return self.root / "proposals"

    @property
    def clusters_path(self) -> Path:
        return self.root / "clusters.json"

    @property
    def annotations_path(self) -> Path:
        return self.root / "annotations.json"

    @property
    def overview_path(self) -> Path:
        return self.root / "overview.png"

    def proposals_path(self, image_id: str) -> Path:
        return self.proposals_dir / f"{plain_name(image_id, 'image id')}.npz"  # never outside proposals/

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def predictions_dir(self) -> Path:
        return self.root / "predictions"

    @property
    def evaluation_path(self) -> Path:
        return self.root / "evaluation.json"

    @property
    def filtering_path(self) -> Path:
        return self.root / "filtering.json"

    def predictions_path(self, image_id: str) -> Path:
        return self.predictions_dir / f"{plain_name(image_id, 'image id')}.npz"

    @property
    def overlapping_dir(self) -> Path:
        """The images' overlapping objects (RunConfig.second_scale, mirror_view), kept with the predictions they were
        made for."""
        return self.predictions_dir / "overlapping"

    def overlapping_path(self, image_id: str, folder: Path | None = None) -> Path:
        """One image's overlapping objects in :attr:`overlapping_dir` (``folder``: a staging folder while they are
        made)."""
        return (folder or self.overlapping_dir) / f"{plain_name(image_id, 'image id')}.npz"

    def view_dir(self, folder: str) -> Path:
        """The project of one of the run's views (engine.orchestration.views: the whole method again at the second
        scale, on the images mirrored, or both): derived files only, made and reused by ``run``."""
        return self.root / plain_name(folder, "view folder")

    def closer_look_path(self, image_id: str) -> Path:
        """One image's memo of the final objects' closer look (engine.method.closer_look.recut_objects)."""
        return self.root / "closer_look" / f"{plain_name(image_id, 'image id')}.npz"

    def crop_tokens_path(self, image_id: str) -> Path:
        """One image's memo of its small objects' crops' tokens (engine.orchestration.group_cutting)."""
        return self.root / "closer_look" / f"{plain_name(image_id, 'image id')}.crops.npz"

    @property
    def predictions_staging_dir(self) -> Path:
        return self.root / "predictions.partial"

    def replace_predictions(self) -> None:
        """The complete, stamped staging folder becomes predictions/ (two renames; a stop between them is
        finished by :meth:`recover_predictions`, so the export never falls back to proposals unannounced)."""
        replaced = self.root / "predictions.old"
        shutil.rmtree(replaced, ignore_errors=True)
        if self.predictions_dir.exists():
            self.predictions_dir.rename(replaced)
        self.predictions_staging_dir.rename(self.predictions_dir)
        shutil.rmtree(replaced, ignore_errors=True)

    def recover_predictions(self) -> bool:
        """Finish a predictions swap that stopped between its two renames: predictions/ is gone and the staging
        folder is complete (its stamp is written last). True when it did."""
        staging = self.predictions_staging_dir
        if self.predictions_dir.exists() or not (staging / "stamp.json").exists():
            return False
        try:
            staging.rename(self.predictions_dir)
        except OSError:  # another process finished it first
            return self.predictions_dir.exists()
        shutil.rmtree(self.root / "predictions.old", ignore_errors=True)
        return True

    # -- state -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self):
        """Exclusive use of the project by this process; a second process (or a second hold in this one) is
        refused at once with a clear message naming the holder.

        An OS file lock through filelock (flock on Linux and macOS, LockFileEx on Windows), so the system
        releases it when the holder dies, even by kill -9. Who holds it is written beside it (``.lock.holder``):
        filelock may truncate the lock file itself when another process tries it, and Windows does not let
        others read a locked file.
        """
        from filelock import FileLock, Timeout

        self.create()
        lock = FileLock(str(self.root / ".lock"), timeout=0)  # timeout 0: one try, never a wait
        try:
            lock.acquire()
        except Timeout:
            raise ProjectLockedError(f"{self.root} is in use by {self._lock_holder()}; wait for it to finish or "
                                     "stop it, then try again.") from None
        holder = self.root / ".lock.holder"
        try:
            holder.write_text(f"maskdistill process {os.getpid()} on {socket.gethostname()}")
            remove_stale_temporary_files(self.root)  # left by a process killed mid-write
            yield self
        finally:
            holder.unlink(missing_ok=True)
            lock.release()

    def _lock_holder(self) -> str:
        """Who holds :meth:`lock`, as its holder wrote it ("another process" while it has not yet)."""
        try:
            return (self.root / ".lock.holder").read_text().strip() or "another process"
        except OSError:
            return "another process"

    @contextlib.contextmanager
    def state_lock(self, timeout: float = 30.0):
        """Short exclusive hold on the user's state files (categories, assignments, corrections) for one
        read-modify-write, so two writers never lose each other's change. Separate from :meth:`lock`, which a
        run holds for minutes: renaming a category during a run waits for other edits only, not for the run.
        """
        from filelock import FileLock, Timeout

        self.create()
        # one lock object per path and per-thread counters: re-entrant in a thread, exclusive across threads
        lock = FileLock(str(self.root / ".state.lock"), is_singleton=True)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise ProjectLockedError(f"The user's state in {self.root} is being changed by another process for "
                                     f"more than {timeout:g} s; try again.") from None
        try:
            yield self
        finally:
            lock.release()

    def create(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"Project path {self.root} exists and is not a folder.")
        self.root.mkdir(parents=True, exist_ok=True)

    def read_config(self) -> dict:
        if not self.config_path.exists():
            raise FileNotFoundError(f"{self.root} is not a maskdistill project (no project.json). "
                                    f"Create one with: maskdistill run IMAGE_FOLDER --project {self.root}")
        config = read_json(self.config_path, dict, "restore it from a copy, or run `maskdistill run IMAGE_FOLDER "
                                                   f"--project {self.root}` to write it again")
        version = config.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"{self.config_path}: project schema version {version!r} is not supported by this "
                             f"version of maskdistill (schema {SCHEMA_VERSION}).")
        return check_project_config(self.config_path, config)

    def write_config(self, config: dict) -> None:
        atomic_write_json(self.config_path, {"schema_version": SCHEMA_VERSION, **config})

    def stable_coco_ids(self, relative_paths: list) -> dict:
        """COCO image ids (>= 1) that stay the same across runs: known images keep theirs, new ones append."""
        # a damaged images.json is rebuilt by the run, which says so (schema.derived_file_notes)
        entries = read_derived_or_none(read_images, self.images_path) or []
        known = {plane_key(entry["relative_path"], entry.get("plane")): entry["coco_id"]  # a plane of a stack
                 for entry in entries}                                                   # is its own image
        next_id = max(known.values(), default=0) + 1
        ids = {}
        for rel in relative_paths:
            if rel not in known:
                known[rel] = next_id
                next_id += 1
            ids[rel] = known[rel]
        return ids


def plane_key(relative_path: str, plane) -> str:
    """What names one image of a folder: its path, and the plane for a plane of a stack ("stack.tif#3")."""
    return relative_path if plane is None else f"{relative_path}#{plane}"


def save_image_proposals(path: Path, proposals, embeddings, config_key: str) -> None:
    """One image's proposals and mask embeddings; full-resolution masks as COCO RLE strings (made from each
    mask's bounding box where the stack has them), patch masks as cell lists (``patch_offsets``,
    ``patch_cells``, ``patch_grid``: see :class:`engine.masks.SparseMasks`)."""
    masks = proposals.masks
    rles = [json.dumps(mask_rle(masks, i)) for i in range(len(masks))]
    patch = proposals.patch_masks
    patch = patch if isinstance(patch, SparseMasks) else SparseMasks.from_dense(patch)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        config_key=np.array(config_key),
        image_hw=np.array(masks.shape[1:] if len(proposals) else (0, 0)),
        rles=np.array(rles, dtype=str),
        patch_offsets=patch.offsets,
        patch_cells=patch.cells.astype(np.int32 if patch.grid_hw[0] * patch.grid_hw[1] < 2 ** 31 else np.int64),
        patch_grid=np.array(patch.grid_hw, np.int64),
        scores=proposals.scores,
        sources=np.array(proposals.sources, dtype=str),
        embeddings=np.asarray(embeddings, np.float32),
    )
    atomic_write_bytes(path, buffer.getvalue())


PROPOSALS_HINT = "delete it and re-run `maskdistill run` to recompute"
def predictions_hint(path: Path) -> str:
    """What to do about a damaged predictions file (<project>/predictions/<image>.npz, or an image's overlapping
    objects in <project>/predictions/overlapping/)."""
    folders = Path(path).absolute().parents
    root = next((folder.parent for folder in folders if folder.name == "predictions"), folders[1])
    return f"delete it and run `maskdistill predict --project {root}` to recompute"
# what np.load and the checks below raise on a truncated, garbled or incomplete .npz
_NPZ_ERRORS = (OSError, ValueError, KeyError, EOFError, TypeError, IndexError, AttributeError, zipfile.BadZipFile,
               zlib.error, UnicodeDecodeError)


LAZY_MASK_BYTES = 256 * 2 ** 20  # decoded stacks above this stay RLE and decode one mask at a time


class RleMasks:
    """(n, H, W) bool masks kept as checked COCO RLEs, decoded one at a time (``[i]``, iteration);
    ``[index array / bool array / slice]`` gives a subset, ``np.asarray`` decodes the whole stack. Used for
    files whose decoded stack would exceed ``LAZY_MASK_BYTES`` (dense images: thousands of full-resolution
    masks), so a later step holds one mask, not all of them."""

    ndim = 3
    dtype = np.dtype(bool)

    def __init__(self, rles: list, hw: tuple):
        self.rles, self.hw = list(rles), tuple(int(v) for v in hw)

    @property
    def shape(self) -> tuple:
        return (len(self.rles), *self.hw)

    def __len__(self) -> int:
        return len(self.rles)

    def rle(self, index: int) -> dict:
        """The stored RLE of mask ``index`` (what encode_rle gives for it), without decoding."""
        return self.rles[int(index)]

    def crop(self, index: int) -> tuple:
        """(box, bool crop) of mask ``index``; (None, None) when it is empty."""
        mask = decode_rle(self.rles[int(index)])
        box = mask_box(mask)
        return (None, None) if box is None else (box, mask[box].copy())

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return decode_rle(self.rles[int(index)])
        chosen = np.arange(len(self.rles))[index]
        return RleMasks([self.rles[i] for i in np.atleast_1d(chosen)], self.hw)

    def __iter__(self):
        for rle in self.rles:
            yield decode_rle(rle)

    def __array__(self, dtype=None, copy=None):
        stack = np.zeros(self.shape, bool)
        for i, rle in enumerate(self.rles):
            stack[i] = decode_rle(rle)
        return stack if dtype is None else stack.astype(dtype)

    def copy(self) -> np.ndarray:
        return np.asarray(self)


def joined_masks(first, second):
    """Two mask stacks of one image (arrays or :class:`RleMasks`) as one: decoded when both are, else RLE-backed."""
    if isinstance(first, np.ndarray) and isinstance(second, np.ndarray):
        return np.concatenate([first, second])
    return RleMasks([mask_rle(first, i) for i in range(len(first))] +
                    [mask_rle(second, i) for i in range(len(second))], first.shape[1:])


def _rle_masks(path: Path, rles: np.ndarray, hw: tuple, hint: str):
    """Decode a per-image file's RLE strings, each checked first (a garbled one names the file); a stack
    larger than ``LAZY_MASK_BYTES`` comes back as :class:`RleMasks` (decoded on access)."""
    if rles.ndim != 1:
        raise ProjectFileError(f"{path}: damaged (masks stored with shape {rles.shape}); {hint}")
    checked = []
    for i, text in enumerate(rles.tolist()):
        try:
            rle = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            rle = None
        problem = rle_problem(rle, hw) if rle is not None else "is not valid JSON"
        if problem:
            raise ProjectFileError(f"{path}: damaged (mask {i} {problem}); {hint}")
        checked.append(rle)
    if len(checked) * int(np.prod(hw)) > LAZY_MASK_BYTES:
        return RleMasks(checked, hw)
    masks = np.zeros((len(checked), *hw), bool)
    for i, rle in enumerate(checked):
        masks[i] = decode_rle(rle)
    return masks


PATCH_KEYS_SPARSE = ("patch_offsets", "patch_cells", "patch_grid")
PATCH_KEYS_EARLIER = ("patch_masks",)  # files of an earlier version (one (n, gh, gw) array): named, not read


def _patch_masks(path: Path, data: dict):
    """The file's patch masks as SparseMasks (cell lists); a file of an earlier version is refused by name (its
    proposals are recomputed by `run`, like a damaged file's; the user's files are not touched)."""
    if "patch_masks" in data:
        raise ProjectFileError(f"{path}: proposals written by an earlier version of maskdistill (patch masks "
                               f"in one array); {PROPOSALS_HINT}")
    try:
        return SparseMasks(data["patch_offsets"], data["patch_cells"], tuple(np.asarray(data["patch_grid"]).ravel()))
    except (ValueError, TypeError) as error:
        raise ProjectFileError(f"{path}: damaged (patch masks: {error}); {PROPOSALS_HINT}") from None


def _read_proposals(path: Path, image_hw: tuple | None):
    path = Path(path)
    data = _read_npz(path, ("config_key", "image_hw", "rles", "scores", "sources", "embeddings"),
                     "proposals", PROPOSALS_HINT, one_of=(PATCH_KEYS_SPARSE, PATCH_KEYS_EARLIER))
    config_key = str(data["config_key"])
    stored_hw = tuple(int(v) for v in np.asarray(data["image_hw"]).ravel())
    rles, scores, embeddings = data["rles"], data["scores"], data["embeddings"]
    patch_masks = _patch_masks(path, data)
    sources = [str(s) for s in data["sources"].tolist()]
    n = len(rles) if rles.ndim else -1
    if len(stored_hw) != 2 or (n > 0 and image_hw is not None and stored_hw != tuple(image_hw)):
        raise ProjectFileError(f"{path}: proposals of a {stored_hw} image, expected {tuple(image_hw or ())}; "
                               f"{PROPOSALS_HINT}")
    hw = tuple(image_hw) if image_hw is not None else stored_hw
    shapes_ok = (patch_masks.ndim == 3 and embeddings.ndim == 2) or n == 0
    if not (shapes_ok and patch_masks.ndim and len(patch_masks) == n and scores.shape == (n,)
            and len(sources) == n and embeddings.ndim and len(embeddings) == n):
        raise ProjectFileError(f"{path}: damaged (its arrays disagree on the number of masks); {PROPOSALS_HINT}")
    if not (np.isfinite(scores).all() and np.isfinite(embeddings).all()):
        raise ProjectFileError(f"{path}: damaged (scores or embeddings are not finite); {PROPOSALS_HINT}")
    masks = _rle_masks(path, rles, hw, PROPOSALS_HINT)
    return Proposals(masks, patch_masks, scores, sources), embeddings, config_key


def _read_npz(path: Path, keys: tuple, kind: str, hint: str, one_of: tuple = ()) -> dict:
    """The arrays ``keys`` of a per-image .npz file, plus the first group of ``one_of`` (alternative
    layouts) that the file has all of; a missing file raises FileNotFoundError, anything torn, foreign or
    incomplete a ProjectFileError naming the file and ``hint`` (what to do)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            files = getattr(data, "files", None) or ()
            group = next((g for g in one_of if all(key in files for key in g)), one_of[0] if one_of else ())
            _require(path, data, keys + tuple(group), kind, hint)
            return {key: data[key] for key in keys + tuple(group)}
    except (FileNotFoundError, ProjectFileError):
        raise
    except _NPZ_ERRORS as error:
        raise ProjectFileError(f"{path}: not a readable {kind} file ({_describe(error)}); {hint}") from None


def _require(path: Path, data, keys: tuple, kind: str, hint: str) -> None:
    files = getattr(data, "files", None)
    if files is None:  # np.load read a single array, not an .npz archive
        raise ProjectFileError(f"{path}: not a readable {kind} file (not an .npz archive); {hint}")
    missing = [key for key in keys if key not in files]
    if missing:
        raise ProjectFileError(f"{path}: not a readable {kind} file (no {', '.join(repr(k) for k in missing)} "
                               f"entry: incomplete or from another program); {hint}")


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def load_image_proposals(path: Path, image_hw: tuple | None):
    """(proposals, embeddings, config_key) as saved by :func:`save_image_proposals`.

    A truncated, garbled or incomplete file raises ProjectFileError naming it and what to do.
    """
    return _read_proposals(path, image_hw)


def load_recut_memo(path: Path, key: str) -> dict:
    """The closer look's memo of one image ({box: (window, mask in the window)}) when it was made for ``key``
    (the image's features and the crop settings); {} when absent, made for other features, or unreadable (it
    is only a memo: the masks are cut again)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["key"]) != key:
                return {}
            boxes, windows, offsets, bits = stored["boxes"], stored["windows"], stored["offsets"], stored["bits"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return {}
    memo = {}
    for i, (box, window) in enumerate(zip(boxes.tolist(), windows.tolist())):
        height, width = window[3] - window[1], window[2] - window[0]
        crop = np.unpackbits(bits[offsets[i]:offsets[i + 1]], count=height * width).reshape(height, width)
        memo[tuple(box)] = (tuple(window), crop.astype(bool))
    return memo


def save_recut_memo(path: Path, key: str, memo: dict) -> None:
    packed = [np.packbits(crop.ravel()) for _, crop in memo.values()]
    buffer = io.BytesIO()
    np.savez(buffer, key=np.array(key), boxes=np.array(list(memo), np.int64).reshape(-1, 4),
             windows=np.array([window for window, _ in memo.values()], np.int64).reshape(-1, 4),
             offsets=np.cumsum([0] + [len(b) for b in packed]).astype(np.int64),
             bits=np.concatenate(packed) if packed else np.zeros(0, np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())


def load_crop_tokens(path: Path, key: str) -> dict:
    """One image's memo of crops' tokens ({window (x0, y0, x1, y1): (tokens (n, D) float16, grid_hw)}) when it was
    made for ``key`` (the image's features and the crop settings); {} when absent, made for other features, or
    unreadable (it is only a memo: the crops are embedded again)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["key"]) != key:
                return {}
            windows, grids = stored["windows"].tolist(), stored["grids"].tolist()
            tokens = dequantise_rows(stored["tokens_q"], stored["tokens_scale"], stored["tokens_mean"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return {}
    ends = np.cumsum([gh * gw for gh, gw in grids]).astype(int)
    if len(tokens) != (ends[-1] if len(ends) else 0):
        return {}
    return {tuple(window): (rows, tuple(grid))
            for window, grid, rows in zip(windows, grids, np.split(tokens, ends[:-1]))}


def save_crop_tokens(path: Path, key: str, memo: dict) -> None:
    """What :func:`load_crop_tokens` reads, the tokens int8 per patch as the feature cache keeps them (about 0.2 MB
    a crop of 24 x 24 patches)."""
    rows = [np.asarray(tokens) for tokens, _ in memo.values()]
    quantised, scale, mean = quantise_rows(np.concatenate(rows) if rows else np.zeros((0, 1), np.float32))
    buffer = io.BytesIO()
    np.savez(buffer, key=np.array(key), windows=np.array(list(memo), np.int64).reshape(-1, 4),
             grids=np.array([grid for _, grid in memo.values()], np.int64).reshape(-1, 2), tokens_q=quantised,
             tokens_scale=scale, tokens_mean=mean)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())


def save_image_predictions(path: Path, semantic: np.ndarray, masks: np.ndarray | LabelMasks, classes, scores) -> None:
    """One image's model output: the semantic map (0 background, class ids) and scored instances (``masks``: an
    (n, H, W) stack, as an array or label map)."""
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        semantic=semantic.astype(np.uint16),
        rles=np.array([json.dumps(mask_rle(masks, i)) for i in range(len(masks))], dtype=str),
        classes=np.asarray(classes, np.int32),
        scores=np.asarray(scores, np.float32),
    )
    atomic_write_bytes(path, buffer.getvalue())


def weigh_image_predictions(path: Path, weights) -> None:
    """One image's predicted scores times ``weights`` (one per object), replacing the weights any earlier call gave
    (kept in the file as ``scale_weights``): the scores as predicted times these, however often it is called. Used
    where a second scale agrees or not (engine.orchestration.overlapping); no mask is decoded."""
    path = Path(path)
    data = _read_npz(path, ("semantic", "rles", "classes", "scores"), "predictions", predictions_hint(path),
                     one_of=(("scale_weights",), ()))
    weights = np.asarray(weights, np.float32)
    earlier = data.pop("scale_weights", np.ones_like(weights))
    if weights.shape != data["scores"].shape or earlier.shape != weights.shape:
        raise ProjectFileError(f"{path}: damaged (its arrays disagree on the number of masks); "
                               f"{predictions_hint(path)}")
    scores = data["scores"] / np.maximum(earlier, 1e-6) * weights
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{**data, "scores": scores.astype(np.float32), "scale_weights": weights})
    atomic_write_bytes(path, buffer.getvalue())


def predicted_scores(path: Path) -> np.ndarray:
    """One image's scores as predicted, before :func:`weigh_image_predictions` weighed them (the learnt agreement
    reads them, so a second weighing learns from what the first did not change)."""
    path = Path(path)
    data = _read_npz(path, ("scores",), "predictions", predictions_hint(path),
                     one_of=(("scale_weights",), ()))
    return data["scores"] / np.maximum(data.get("scale_weights", np.ones_like(data["scores"])), 1e-6)


def load_image_predictions(path: Path) -> tuple:
    """(semantic, masks, classes, scores) as saved by :func:`save_image_predictions`.

    A truncated, garbled or incomplete file raises ProjectFileError naming it and what to do.
    """
    path = Path(path)
    data = _read_npz(path, ("semantic", "rles", "classes", "scores"), "predictions", predictions_hint(path))
    semantic, rles, classes, scores = data["semantic"], data["rles"], data["classes"], data["scores"]
    n = len(rles) if rles.ndim == 1 else -1
    if semantic.ndim != 2 or classes.shape != (n,) or scores.shape != (n,):
        raise ProjectFileError(f"{path}: damaged (its arrays disagree on the number of masks); "
                               f"{predictions_hint(path)}")
    masks = _rle_masks(path, rles, semantic.shape, predictions_hint(path))
    return semantic, masks, classes, scores


def open_project(project_dir) -> tuple:
    """(project, project.json, images.json entries, clusters.json) of a project made by ``run``; each file
    is checked, and a problem names the file and what to do."""
    project = Project(project_dir)
    project_config = project.read_config()
    for path in (project.images_path, project.clusters_path):
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the run that made {project.root} did not finish. Run "
                                    f"`{rerun_hint(project.root)}` again to complete it.")
    entries, clusters = read_images(project.images_path), read_clusters(project.clusters_path)  # schema-checked
    check_user_files(project.root)  # before any command uses them: a wrong value stops it before it writes
    return project, project_config, entries, clusters
