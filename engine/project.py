"""The project folder: all state of a run lives here, written atomically, never in globals.

ARCHITECTURE.md ("Project folder") documents the layout; this module knows its paths, the schema version,
the lock, stable COCO image ids and the per-image proposal / prediction files. The user's own work
(categories.json, assignments.json, corrections/) is handled by engine.corrections and engine.review.
"""
from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import socket
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes, atomic_write_json, read_json, remove_stale_temporary_files
from .masks import decode_rle, encode_rle
from .proposals import Proposals

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
        return self.proposals_dir / f"{image_id}.npz"

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
        return self.predictions_dir / f"{image_id}.npz"

    # -- state -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self):
        """Exclusive use of the project by this process; a second process is refused with a clear message.

        An OS file lock (flock), so the kernel releases it when the holder dies, even by kill -9.
        """
        self.create()
        handle = open(self.root / ".lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ProjectLockedError(f"{self.root} is in use by {holder}; wait for it to finish or stop it, "
                                     "then try again.") from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"maskdistill process {os.getpid()} on {socket.gethostname()}")
            handle.flush()
            remove_stale_temporary_files(self.root)  # left by a process killed mid-write
            yield self
        finally:
            handle.close()  # closing releases the lock

    def create(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"Project path {self.root} exists and is not a folder.")
        self.root.mkdir(parents=True, exist_ok=True)

    def read_config(self) -> dict:
        if not self.config_path.exists():
            raise FileNotFoundError(f"{self.root} is not a maskdistill project (no project.json). "
                                    "Create one with: maskdistill run IMAGE_FOLDER --project DIR")
        config = read_json(self.config_path)
        version = config.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"{self.config_path}: project schema version {version} is not supported by this "
                             f"version of maskdistill (schema {SCHEMA_VERSION}).")
        return config

    def write_config(self, config: dict) -> None:
        atomic_write_json(self.config_path, {"schema_version": SCHEMA_VERSION, **config})

    def stable_coco_ids(self, relative_paths: list) -> dict:
        """COCO image ids (>= 1) that stay the same across runs: known images keep theirs, new ones append."""
        known = {}
        if self.images_path.exists():
            known = {entry["relative_path"]: entry["coco_id"] for entry in read_json(self.images_path)}
        next_id = max(known.values(), default=0) + 1
        ids = {}
        for rel in relative_paths:
            if rel not in known:
                known[rel] = next_id
                next_id += 1
            ids[rel] = known[rel]
        return ids


def save_image_proposals(path: Path, proposals, embeddings, config_key: str) -> None:
    """One image's proposals and mask embeddings; full-resolution masks as COCO RLE strings."""
    rles = [json.dumps(encode_rle(mask)) for mask in proposals.masks]
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        config_key=np.array(config_key),
        image_hw=np.array(proposals.masks.shape[1:] if len(proposals) else (0, 0)),
        rles=np.array(rles, dtype=str),
        patch_masks=proposals.patch_masks,
        scores=proposals.scores,
        sources=np.array(proposals.sources, dtype=str),
        embeddings=np.asarray(embeddings, np.float32),
    )
    atomic_write_bytes(path, buffer.getvalue())


def load_image_proposals(path: Path, image_hw: tuple):
    """(proposals, embeddings, config_key) as saved by :func:`save_image_proposals`."""
    with np.load(path) as data:
        rles = [json.loads(r) for r in data["rles"].tolist()]
        masks = np.stack([decode_rle(r) for r in rles]) if rles else np.zeros((0, *image_hw), bool)
        proposals = Proposals(masks, data["patch_masks"], data["scores"], [str(s) for s in data["sources"]])
        return proposals, data["embeddings"], str(data["config_key"])


def save_image_predictions(path: Path, semantic: np.ndarray, masks: np.ndarray, classes, scores) -> None:
    """One image's model output: the semantic map (0 background, class ids) and scored instances."""
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        semantic=semantic.astype(np.uint16),
        rles=np.array([json.dumps(encode_rle(m)) for m in masks], dtype=str),
        classes=np.asarray(classes, np.int32),
        scores=np.asarray(scores, np.float32),
    )
    atomic_write_bytes(path, buffer.getvalue())


def load_image_predictions(path: Path) -> tuple:
    """(semantic, masks, classes, scores) as saved by :func:`save_image_predictions`."""
    with np.load(path) as data:
        semantic = data["semantic"]
        rles = [json.loads(r) for r in data["rles"].tolist()]
        masks = np.stack([decode_rle(r) for r in rles]) if rles else np.zeros((0, *semantic.shape), bool)
        return semantic, masks, data["classes"], data["scores"]
