"""The trained instance model scores the tree's nodes: node score = teacher + w * best (IoU x detection score)."""
import os, sys
src = open(str(__import__("pathlib").Path(__file__).with_name("inst.py"))).read()
src = src.split("torch.set_num_threads(2)")[0]
exec(src)
torch.set_num_threads(2)
model = mt.build_model()
model.load_state_dict(torch.load(os.environ.get("TREE_EXPERIMENT_DIR", "runs/tree-experiment") + "/inst_model.pt"))
pred = mt.predict(model, samples)
print("model alone", mt.score(samples, pred), flush=True)
# node masks at R: z["up"] is (nodes, 160, 160)
for z, (masks, scores) in zip(imgs, pred):
    if len(masks) == 0:
        z["det"] = np.zeros(len(z["up"])); continue
    U = z["up"].reshape(len(z["up"]), -1).astype(np.float32)
    P = masks.reshape(len(masks), -1).astype(np.float32)
    inter = U @ P.T
    iou = inter / np.maximum(U.sum(1)[:, None] + P.sum(1)[None] - inter, 1)
    z["det"] = (iou * scores[None]).max(1)
for w in [0.5, 1.0, 2.0, 4.0]:
    print(f"teacher + {w} x model", evaluate(imgs, lambda z: score_fn(z) + w * z["det"]), flush=True)
print("model on nodes alone", evaluate(imgs, lambda z: z["det"]), flush=True)
