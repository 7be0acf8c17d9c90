"""Does the CLS token of an object's masked crop tell the folder's object from its parts, groups and salient
background better than its pooled patch tokens? (issue 20; the engine's typicality weights every final object by
((1 + cosine of its pooled tokens to the folder's prototype) / 2)^2, docs/decisions.md#d-typical.) Each image's
first TOP final objects (as the project ranks them, the engine's typicality included) are cut as masked box crops
(background painted grey, as the `masked_crop_cls` clustering embedding) and sent through the backbone at 224 px
(bfloat16 on CPUs with native units); the folder's prototype is the score-weighted mean of the top objects' CLS
tokens (less the folder's mean crop CLS, unit length), and the objects are re-ranked by score x
((1 + cosine) / 2)^p; the objects past TOP get the image's lowest weight. ``IMAGES=DIR``: the pixels of a noised
copy (files NAME.png); ``CONTEXT=1``: the crops keep their background; once both ways' crops are cached (a run with
and one without CONTEXT=1), both ways together are measured too (the engine's default: the geometric mean of each
way's weight, each way centred on its own mean with its own prototype). Nothing is written but the crops' cache in
the project. Run from the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/crop_typicality.py PROJECT FOLDER [TOP]"""
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.method.clustering import box_crop  # noqa: E402
from engine.method.features import FeatureExtractor  # noqa: E402
from engine.method.typicality import crop_typicality_weights, object_embeddings, typicality_weights  # noqa: E402

project, folder = Path(sys.argv[1]), Path(sys.argv[2])
top = int(sys.argv[3]) if len(sys.argv) > 3 else 8
images = common.scored_images(folder)
pixels_dir = Path(os.environ.get("IMAGES", folder / "images"))  # a noised copy: its files are NAME.png
if pixels_dir != folder / "images":
    images = [replace(i, file_name=f"{i.file_name}.png") for i in images]
loaded = {n: v for n, v in common.final_objects(project, images).items() if len(v[0])}
names = list(loaded)
context = bool(os.environ.get("CONTEXT"))  # the crop with its background (`crop_cls`) instead of painted grey
cache = project / f"crop_cls_top{top}{'_context' if context else ''}.npz"
if cache.exists():
    stored = np.load(cache)
    cls = {n: stored[str(i)] for i, n in enumerate(names)}
else:
    extractor = FeatureExtractor("dinov2_vits14", device="cpu")
    started, cls = time.perf_counter(), {}
    for i, name in enumerate(names):
        masks, scores = loaded[name]
        pixels = np.asarray(Image.open(pixels_dir / name).convert("RGB"))
        order = np.argsort(-scores, kind="stable")[:top]
        cls[name] = extractor.cls_embeddings([box_crop(pixels, masks[j], mask_background=not context) for j in order],
                                             precision="bfloat16")
        if i % 20 == 0:
            print(f"{i}/{len(names)} images, {time.perf_counter() - started:.0f} s", flush=True)
    np.savez(cache, **{str(i): cls[n] for i, n in enumerate(names)})
    print(f"crops embedded in {time.perf_counter() - started:.0f} s")


def unit(x):
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-8)


every = np.concatenate([cls[n] for n in names])
features_of = common.project_features(project)
pooled = {n: object_embeddings(features_of(n), loaded[n][0]) for n in names}
pooled_proto = unit(sum(pooled[n][np.argmax(loaded[n][1])] * loaded[n][1].max() for n in names))
pooled_weight = {n: typicality_weights(pooled[n], pooled_proto) for n in names}


def ranked(vectors, prototype, power, within, instead=False):
    stage = {}
    for n in names:
        masks, scores = loaded[n]
        order = np.argsort(-scores, kind="stable")
        w = np.power(np.clip((1 + vectors[n][:within] @ prototype) / 2, 0, 1), power)
        weight = np.full(len(scores), w.min())
        weight[order[:len(w)]] = w
        base = scores / np.maximum(pooled_weight[n], 1e-3) if instead else scores
        stage[n] = real_dev.StagePrediction(masks, base * weight, None)
    return stage


for centred in (True, False):
    mean = every.mean(0) if centred else 0.0
    vectors = {n: unit(cls[n] - mean) for n in names}
    tops = np.stack([vectors[n][0] for n in names])
    weights_top = np.array([loaded[n][1].max() for n in names])
    prototype = unit((tops * weights_top[:, None]).sum(0))
    rest = np.concatenate([vectors[n][1:] for n in names])
    print(f"centred {centred}: tops' cosine to the prototype {np.mean(tops @ prototype):.3f}, the others "
          f"{np.mean(rest @ prototype):.3f}")
    print(f"baseline: {common.figures(images, {n: real_dev.StagePrediction(*loaded[n], None) for n in names})}")
    for power in ((0.5, 1.0, 1.5, 2.0) if centred else (2.0,)):
        print(f"  crop CLS typicality ^{power}: {common.figures(images, ranked(vectors, prototype, power, top))}",
              flush=True)
    if centred:
        for within in (2, 3, 4):
            print(f"  ^1 on the first {within} only: {common.figures(images, ranked(vectors, prototype, 1.0, within))}",
                  flush=True)
        print(f"  ^1 instead of the pooled typicality (divided out): "
              f"{common.figures(images, ranked(vectors, prototype, 1.0, top, instead=True))}", flush=True)
        print(f"  ^2 instead: {common.figures(images, ranked(vectors, prototype, 2.0, top, instead=True))}", flush=True)


other = project / f"crop_cls_top{top}{'' if context else '_context'}.npz"
if other.exists():  # both ways of cutting, as the engine weighs them
    stored = np.load(other)
    both = {n: np.stack([cls[n], stored[str(i)]] if not context else [stored[str(i)], cls[n]], axis=1)
            for i, n in enumerate(names)}
    for within in (4, top):
        found = crop_typicality_weights([both[n][:within] for n in names], [loaded[n][1].max() for n in names])
        stage = {}
        for n, weights in zip(names, found):
            masks, scores = loaded[n]
            order = np.argsort(-scores, kind="stable")
            weight = np.full(len(scores), weights.min())
            weight[order[:len(weights)]] = weights
            stage[n] = real_dev.StagePrediction(masks, scores * weight, None)
        print(f"both ways (masked and in context), the geometric mean, first {within}: "
              f"{common.figures(images, stage)}", flush=True)
