import os, sys
sys.argv = [sys.argv[0], "feral_cats", "8"]
exec(open(str(__import__("pathlib").Path(__file__).with_name("score.py"))).read().split("from rank import nms, boxes_of")[0].replace("for k, f in {", "for k, f in {} and {"))
import rank

def antichain(z, scores, thr=None, top=12):
    order = np.argsort(-scores)
    g = z["masks"].reshape(len(z["masks"]), -1).astype(np.float32)
    inter = g @ g.T
    keep = []
    for i in order:
        if all(inter[i, j] == 0 for j in keep):
            keep.append(i)
            if len(keep) >= top: break
    return np.array(keep, int)
import rank as R2
evaluate.__globals__["nms"] = antichain
for k, f in {"rule": rule, "iou+0.1rule": lambda z: s_iou(z) + 0.1 * rule(z), "soft+0.1rule": lambda z: s_soft(z) + 0.1 * rule(z),
             "iou+soft+0.1rule": lambda z: s_iou(z) + s_soft(z) + 0.1 * rule(z)}.items():
    print("antichain", f"{k:16s}", evaluate(imgs, f), flush=True)
