"""The final objects' recut (closer_look.recut_objects) from other crop features, on a copy of a finished project:
predict again, then score against the ground truth (issue 20 / 21: does the box prompt's middle block help the
recut too?).
.venv/bin/python benchmarks/experiments/box_prompt/recut_variants.py PROJECT FOLDER VARIANT
FOLDER: the images' folder with ground_truth.json (feral_cats: class-agnostic; real-dev: also per source).
VARIANT: tokens-cut (the final tokens, before), middle-cut (the middle block, seeded cut: kept),
middle-classifier (the middle block, the box classifier). RECUT_SHARE=1.0: recut objects of any size."""
import os, shutil, sys, tempfile
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
import engine.method.closer_look as closer_look
import engine.orchestration.distillation as distillation
from benchmarks import real_dev
from engine.method.features import FeatureExtractor
from engine.orchestration.pipeline import predict

project, folder, variant = sys.argv[1:4]
learn = variant.endswith("classifier")
if variant.startswith("tokens"):  # the final tokens where the crop embedder gives the middle block's outputs
    extract = FeatureExtractor.extract

    def final_tokens(self, images):
        found = extract(self, images)
        for features in found:
            features.middle_tokens = features.tokens
        return found
    FeatureExtractor.extract = final_tokens
cut = closer_look._cut_in_window
settings = distillation._recut_settings
distillation._recut_settings = lambda config, device: settings(config, device) + f"|{variant}"
closer_look._cut_in_window = lambda *a, learn_box=True, **k: cut(*a, learn_box=learn, **k)
if os.environ.get("RECUT_SHARE"):  # recut objects up to this share of the image (default RECUT_MAX_SHARE)
    share = float(os.environ["RECUT_SHARE"])
    recut = distillation.recut_objects
    distillation.recut_objects = lambda *a, **k: recut(*a, **{**k, "max_share": share})
    distillation._recut_settings = lambda config, device: settings(config, device) + f"|{variant}|{share}"
copy = os.path.join(tempfile.mkdtemp(prefix="recut-"), "project")
shutil.copytree(project, copy)
predict(copy)
images = [i for i in real_dev.load_ground_truth(folder, default_source=os.path.basename(folder))
          if i.source not in real_dev.DENSE_SOURCES]
per_source = len({i.source for i in images}) > 1
final = real_dev.score_project(copy, images, recurring=None, per_source=per_source)["final"]
metrics = ("corloc", "box_ap50", "mask_ap50", "mask_recall50")
print(variant, "pooled", {m: round(final["total"][m], 3) for m in metrics},
      *(["source mean", {m: round(final["source_mean"][m], 3) for m in metrics[:3]}] if per_source else []))
shutil.rmtree(os.path.dirname(copy))
