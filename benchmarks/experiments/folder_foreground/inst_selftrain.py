"""CutLER's two remaining pieces on the instance model of inst.py: copy-paste of pseudo-objects between images
(in token space: the model sees tokens, not pixels) and one self-training round on its own confident outputs.
Each model re-scores the tree's nodes as inst_rescore.py does. Env: COPY_PASTE=1, ROUNDS=2, CONF=0.7."""
import os, sys
src = open(str(__import__("pathlib").Path(__file__).with_name("inst.py"))).read()
exec(src.split("torch.set_num_threads(2)")[0])
torch.set_num_threads(2)
COPY_PASTE = os.environ.get("COPY_PASTE", "1") == "1"
ROUNDS = int(os.environ.get("ROUNDS", "2"))
CONF = float(os.environ.get("CONF", "0.7"))
rng = np.random.default_rng(0)
pool = [(i, j) for i, s in enumerate(samples) for j in range(len(s["pseudo"])) if s["pseudo"][j].sum() >= 16]


def paste_one(sample):
    """A copy of the sample with one other image's pseudo-object pasted (its tokens and mask) at a random place."""
    tokens, pseudo = sample["tokens"].clone(), sample["pseudo"]
    d, gh, gw = tokens.shape
    i, j = pool[rng.integers(len(pool))]
    other = samples[i]
    cells = mt.resize_mask(other["pseudo"][j], gh).astype(bool) if gh == gw else None
    if cells is None or cells.sum() < 2:
        return sample
    rows, cols = np.where(cells.any(1))[0], np.where(cells.any(0))[0]
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    ph, pw = r1 - r0, c1 - c0
    if ph >= gh or pw >= gw:
        return sample
    cut = cells[r0:r1, c0:c1]
    src_tokens = other["tokens"][:, r0:r1, c0:c1]
    if rng.random() < 0.5:
        cut, src_tokens = cut[:, ::-1].copy(), src_tokens.flip(-1)
    y, x = int(rng.integers(0, gh - ph + 1)), int(rng.integers(0, gw - pw + 1))
    region = tokens[:, y:y + ph, x:x + pw]
    where = torch.from_numpy(cut)[None].expand_as(region)
    tokens[:, y:y + ph, x:x + pw] = torch.where(where, src_tokens, region)
    pasted_cells = np.zeros((gh, gw), bool)
    pasted_cells[y:y + ph, x:x + pw] = cut
    pasted = mt.resize_mask(pasted_cells, mt.SIDE)
    kept = []
    for m in pseudo:
        left = m & ~pasted
        if left.sum() >= 0.5 * max(m.sum(), 1):
            kept.append(left)
    kept.append(pasted)
    return {**sample, "tokens": tokens, "pseudo": np.array(kept)}


if COPY_PASTE:
    base_train = mt.train
    def train_with_paste(model, samples_, epochs, **kw):
        # each epoch sees every image once as it is and once with a pasted object (CutLER pastes 1-n objects)
        augmented = list(samples_) + [paste_one(s) for s in samples_ for _ in range(1)]
        return base_train(model, augmented, max(1, epochs // 2 + epochs % 2), **kw)
    mt_train = train_with_paste
else:
    mt_train = mt.train


def rescore(pred, tag):
    for z, (masks, scores) in zip(imgs, pred):
        if len(masks) == 0:
            z["det"] = np.zeros(len(z["up"])); continue
        U = z["up"].reshape(len(z["up"]), -1).astype(np.float32)
        P = masks.reshape(len(masks), -1).astype(np.float32)
        inter = U @ P.T
        iou = inter / np.maximum(U.sum(1)[:, None] + P.sum(1)[None] - inter, 1)
        z["det"] = (iou * scores[None]).max(1)
    print(tag, "model alone", mt.score(samples, pred), flush=True)
    print(tag, "teacher + 1 x model", evaluate(imgs, lambda z: score_fn(z) + 1.0 * z["det"]), flush=True)


model = mt.build_model()
model.roi_heads.proposal_matcher = DropLossMatcher(0.5, 0.5, allow_low_quality_matches=False)
for rnd in range(ROUNDS):
    t = mt_train(model, samples, EPOCHS)
    print(f"round {rnd} copy_paste={COPY_PASTE} train s", round(t), flush=True)
    pred = mt.predict(model, samples)  # masks at R (160), scores
    rescore(pred, f"round {rnd}")
    if rnd + 1 == ROUNDS:
        break
    # next targets: the confident predictions (at 448) merged with the old targets they do not duplicate
    model.eval()
    for s in samples:
        model.backbone.tokens = s["tokens"][None]
        with torch.no_grad():
            out = model([torch.zeros(3, mt.SIDE, mt.SIDE)])[0]
        conf = [m[0].numpy() >= 0.5 for m, sc in zip(out["masks"], out["scores"]) if sc >= CONF]
        merged = list(conf)
        for old in s["pseudo"]:
            if all((old & m).sum() / max((old | m).sum(), 1) < 0.5 for m in conf):
                merged.append(old)
        s["pseudo"] = np.array(merged).reshape(-1, mt.SIDE, mt.SIDE)
    print(f"round {rnd + 1} targets per image", np.mean([len(s["pseudo"]) for s in samples]), flush=True)
