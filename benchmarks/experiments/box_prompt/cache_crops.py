"""Cache the closer look's crop tokens for every annotated object's box (issue 21, box prompt variants).

Run from the repository root: .venv/bin/python benchmarks/experiments/box_prompt/cache_crops.py OUT.npz
Folders: feral_cats' first 30 images (a development folder) and real-dev's mask-annotated images. Each object:
its box from the annotation, the crop window of engine.method.closer_look (1.5x), the crop's tokens at 448 px,
the crop pixels and the annotated mask inside the crop (the box lies inside the crop, so IoU there is IoU on the
whole image)."""
import json, os, pickle, sys
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
import numpy as np
from PIL import Image
from pycocotools import mask as mu
from engine.method.closer_look import crop_window
from engine.method.features import FeatureExtractor

fx = FeatureExtractor("dinov2_vits14", precision=os.environ.get("PRECISION", "auto"))
out = []
for folder, limit in (("../shared/data/domains/feral_cats", 30), ("../shared/data/real-dev", None)):
    gt = json.load(open(f"{folder}/ground_truth.json"))
    anns: dict = {}
    for a in gt["annotations"]:
        if isinstance(a.get("segmentation"), (list, dict)) and a.get("segmentation"):
            anns.setdefault(a["image_id"], []).append(a)
    images = sorted((im for im in gt["images"] if im["id"] in anns), key=lambda im: im["file_name"])[:limit]
    for im in images:
        image = np.asarray(Image.open(f"{folder}/images/{im['file_name']}").convert("RGB"))
        h, w = image.shape[:2]
        for a in anns[im["id"]]:
            seg = a["segmentation"]
            rle = mu.frPyObjects(seg, h, w) if isinstance(seg, list) else seg
            gtm = mu.decode(mu.merge(rle) if isinstance(rle, list) else rle).astype(bool)
            if gtm.sum() < 16:
                continue
            ys, xs = np.nonzero(gtm)
            box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
            x0, y0, x1, y1 = crop_window((h, w), box, factor=float(os.environ.get("FACTOR", "1.5")))
            crop = np.ascontiguousarray(image[y0:y1, x0:x1])
            f = fx.extract([crop])[0]
            out.append(dict(folder=os.path.basename(folder), file=im["file_name"], crop=crop, tokens=f.tokens.astype(np.float16),
                            grid=f.grid_hw, gt=gtm[y0:y1, x0:x1], box=(box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0),
                            share=float(gtm.mean())))
    print(folder, len(out), flush=True)
pickle.dump(out, open(sys.argv[1], "wb"))
