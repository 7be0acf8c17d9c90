"""A closer look for a click or a box: re-embed a crop around the object, cut there, paste back (issue 21).

Run from the repository root: .venv/bin/python benchmarks/experiments/zoom_click/zoom.py [N_IMAGES]
Per annotated cat of feral_cats' first N images: the prompt at its most interior point (or its box) answered
from the whole image's tokens (today) and from a crop's own tokens; IoU with the cat at full resolution."""
import json, os, sys, time
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
import numpy as np
from PIL import Image
from scipy import ndimage
from pycocotools import mask as mu
from engine.method.features import FeatureExtractor
from engine.method.prompt import points_mask

FOLDER = "../shared/data/domains/feral_cats"
N = int(sys.argv[1]) if len(sys.argv) > 1 else 30
gt = json.load(open(f"{FOLDER}/ground_truth.json"))
anns = {}
for a in gt["annotations"]:
    anns.setdefault(a["image_id"], []).append(a)
images = sorted(gt["images"], key=lambda im: im["file_name"])[:N]
fx = FeatureExtractor("dinov2_vits14")
if os.environ.get("VARIANTS") == "implicit":
    from engine.method.closer_look import closer_look_mask, crop_embedder
    crop_embed = crop_embedder({"backbone": "dinov2_vits14", "precision": "bfloat16"})


def feats(image):
    f = fx.extract([image])[0]
    return f.tokens, f.grid_hw


def iou(a, b):
    return float((a & b).sum() / max((a | b).sum(), 1))


def crop_prompt(image, x0, y0, x1, y1, point=None, box=None):
    """The prompt answered on the crop [y0:y1, x0:x1] from the crop's own tokens, pasted into the image."""
    crop = image[y0:y1, x0:x1]
    tokens, grid = feats(crop)
    p = None if point is None else (point[0] - x0, point[1] - y0)
    b = None if box is None else (box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0)
    m = points_mask(tokens, grid, crop, positive=[] if p is None else [p], box=b)
    out = np.zeros(image.shape[:2], bool)
    out[y0:y1, x0:x1] = m
    return out


def square(cx, cy, side, h, w):
    side = int(min(max(side, 56), min(h, w)))
    x0 = int(np.clip(cx - side / 2, 0, w - side)); y0 = int(np.clip(cy - side / 2, 0, h - side))
    return x0, y0, x0 + side, y0 + side


res = {}
start = time.time()
for im in images:
    image = np.asarray(Image.open(f"{FOLDER}/images/{im['file_name']}").convert("RGB"))
    h, w = image.shape[:2]
    tokens, grid = feats(image)
    for a in anns.get(im["id"], []):
        seg = a["segmentation"]
        rle = mu.frPyObjects(seg, h, w) if isinstance(seg, list) or isinstance(seg.get("counts"), list) else seg
        truth = mu.decode(mu.merge(rle) if isinstance(rle, list) else rle).astype(bool)
        if truth.sum() < 16:
            continue
        d = ndimage.distance_transform_edt(truth)
        r, c = np.unravel_index(np.argmax(d), d.shape)
        point = (c + 0.5, r + 0.5)
        bx, by, bw, bh = a["bbox"]
        box = (bx, by, bx + bw, by + bh)
        out = {}
        variants = os.environ.get("VARIANTS", "first")
        if variants == "first":
            base = points_mask(tokens, grid, image, positive=[point])
            out["click"] = base
            out["box"] = points_mask(tokens, grid, image, box=box)
            # zoom by the first answer's extent: a crop 2.5x its box (a wrong, spread mask gives a large crop)
            ys, xs = np.nonzero(base)
            ext = max(xs.max() - xs.min(), ys.max() - ys.min()) if len(xs) else 0.3 * min(h, w)
            out["zoom click (2.5x first mask)"] = crop_prompt(image, *square(point[0], point[1], 2.5 * ext, h, w), point=point)
            out["zoom click (0.4 image)"] = crop_prompt(image, *square(point[0], point[1], 0.4 * min(h, w), h, w), point=point)
            side = 2.0 * max(bw, bh)
            sq = square(bx + bw / 2, by + bh / 2, side, h, w)
            out["zoom box (2x box)"] = crop_prompt(image, *sq, box=box)
            out["zoom box+click (2x box)"] = crop_prompt(image, *sq, point=point, box=box)
        elif variants == "box":
            for f in (1.25, 1.5):
                sq = square(bx + bw / 2, by + bh / 2, f * max(bw, bh), h, w)
                out[f"zoom box ({f}x box)"] = crop_prompt(image, *sq, box=box)
                out[f"zoom box+box centre ({f}x)"] = crop_prompt(image, *sq, point=(bx + bw / 2, by + bh / 2), box=box)
        elif variants == "implicit":  # a click's first answer (cached tokens) sets a box; the closer look answers
            # the box with the click as a labelled cell (production's closer_look_mask, block 8, bfloat16)
            base = points_mask(tokens, grid, image, positive=[point])
            out["click"] = base
            out["box (the annotation's), closer look"] = closer_look_mask(crop_embed, image, box)
            ys, xs = np.nonzero(base)
            if not len(xs):
                half = 0.1 * min(h, w)
                xs, ys = np.array([point[0] - half, point[0] + half]), np.array([point[1] - half, point[1] + half])
            for share in (0.02, 0.071):  # a box of the folder's typical object around the click (0.071: the
                # median share of feral_cats' final objects; 0.02: about the annotated cats', a reference only)
                half = 0.5 * np.sqrt(share * h * w)
                typical = (max(0, point[0] - half), max(0, point[1] - half), min(w, point[0] + half),
                           min(h, point[1] + half))
                out[f"click -> a box of {share} of the image -> closer look"] = closer_look_mask(
                    crop_embed, image, typical, positive=[point])
            for grow in (1.0,):
                cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
                hw_, hh_ = grow * (xs.max() - xs.min() + 1) / 2, grow * (ys.max() - ys.min() + 1) / 2
                implicit = (max(0, cx - hw_), max(0, cy - hh_), min(w, cx + hw_), min(h, cy + hh_))
                out[f"click -> its answer's box x{grow} -> closer look"] = closer_look_mask(
                    crop_embed, image, implicit, positive=[point])
        else:
            centre = (bx + bw / 2, by + bh / 2)
            out["box+click, no zoom"] = points_mask(tokens, grid, image, positive=[point], box=box)
            for f in (1.5, 3.0):
                sq = square(centre[0], centre[1], f * max(bw, bh), h, w)
                out[f"zoom box+click ({f}x box)"] = crop_prompt(image, *sq, point=point, box=box)
            sq = square(centre[0], centre[1], 2.0 * max(bw, bh), h, w)
            out["zoom box+box centre (2x)"] = crop_prompt(image, *sq, point=centre, box=box)
            first = crop_prompt(image, *square(point[0], point[1], 0.4 * min(h, w), h, w), point=point)
            ys, xs = np.nonzero(first)
            if len(xs):
                c2 = ((xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2)
                ext = max(xs.max() - xs.min(), ys.max() - ys.min())
                out["click, zoom twice (0.4 image, then 2x mask)"] = crop_prompt(image, *square(c2[0], c2[1], 2.0 * ext, h, w), point=point)
            else:
                out["click, zoom twice (0.4 image, then 2x mask)"] = first
        for k, m in out.items():
            res.setdefault(k, []).append(iou(m, truth))
    print(im["file_name"], len(next(iter(res.values()), [])), f"{time.time() - start:.0f} s", flush=True)
print(f"\n{len(next(iter(res.values())))} cats of {N} images")
for k, v in res.items():
    v = np.array(v)
    print(f"{k:28s} mean IoU {v.mean():.3f}  >=0.5 {np.mean(v >= 0.5):.3f}  >=0.8 {np.mean(v >= 0.8):.3f}")
