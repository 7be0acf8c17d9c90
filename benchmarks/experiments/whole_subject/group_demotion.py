"""Groups ranked below their members (issue 20, CorLoc): a final object holding two or more other final objects
(own or overlapping: >= ``contain`` of each inside it, each ``min_share``-``max_share`` of it, mutually nearly
disjoint, covering >= ``cover`` of it) scored just under its best member (x ``factor``). On feral_cats 21 of the 55
images CorLoc misses put a group of cats first. CorLoc / box AP50 / mask AP50 / recall@0.5; nothing is written.
From the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/group_demotion.py FOLDER PROJECT"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.real_dev import StagePrediction, StagePredictions  # noqa: E402

folder, project = Path(sys.argv[1]), Path(sys.argv[2])
images = sorted(real_dev.load_ground_truth(folder, default_source=folder.name), key=lambda i: i.file_name)
final = real_dev._keyed(real_dev.project_stages(project)["final"], images)
cache = {}
def load(name):
    if name not in cache:
        p = final[name]
        cache[name] = (np.asarray(p.masks, bool), np.asarray(p.scores, float), p.semantic)
    return cache[name]

def rerank(masks, scores, min_members=2, contain=0.8, min_share=0.1, max_share=0.7, cover=0.5, factor=0.99):
    n = len(masks)
    if n < 3:
        return scores
    flat = masks.reshape(n, -1)
    area = flat.sum(1).astype(float)
    inter = flat.astype(np.float32) @ flat.T.astype(np.float32)
    new = scores.copy()
    for o in range(n):
        inside = (inter[:, o] >= contain * area) & (area >= min_share * area[o]) & (area <= max_share * area[o])
        inside[o] = False
        members: list = []  # nearly disjoint members, best first
        for j in (idx := np.flatnonzero(inside))[np.argsort(-scores[idx])]:
            if all(inter[j, k] < 0.2 * min(area[j], area[k]) for k in members):
                members.append(j)
        if len(members) >= min_members and flat[members].any(0).sum() >= cover * area[o]:
            new[o] = min(scores[o], factor * scores[members].max())
    return new


def score(**kw):
    loaders = {}
    for image in images:
        if image.file_name not in final:
            continue

        def predicted(name=image.file_name):
            m, s, sem = load(name)
            return StagePrediction(m, rerank(m, s, **kw) if kw.get("min_members", 2) > 0 else s, sem)
        loaders[image.file_name] = predicted
    t = real_dev.score_stage(images, StagePredictions(loaders), None, per_source=False)["total"]
    return " / ".join(real_dev._fmt(t[k]) for k in ("corloc", "box_ap50", "mask_ap50", "mask_recall50"))


print("as is      ", score(min_members=0))
for kw in (dict(), dict(min_share=0.2), dict(min_share=0.05), dict(cover=0.7), dict(min_members=3),
           dict(factor=0.5), dict(contain=0.7)):
    print(kw, score(**kw))
