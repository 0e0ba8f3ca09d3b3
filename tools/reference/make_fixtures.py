#!/usr/bin/env python3
"""Writes the Mask R-CNN test fixtures from torchvision itself (deterministic).

  make_fixtures.py [--out Tests/MaskRCNNTests/Fixtures] [--only tiny|basic]

Fixtures/tiny/:
  weights.pth            torch.save zip format, today's torchvision key names
  weights_legacy.pth     torch.save legacy (non-zip) pickle, 2019 key names, _metadata version 1
  weights.safetensors    same tensors, __metadata__ {format, arch, frozen_bn_eps, min_size, max_size, classes}
  stages.safetensors     two synthetic images and the output of every stage for the batch of both
Fixtures/basic/:
  weights.safetensors, stages.safetensors (images, transform.*, features.*, proposals.I, final.I.*)

The stage tensors are read with forward hooks on torchvision's own modules while
`GeneralizedRCNN.forward` runs in eval mode on the batch of both images, so they are
exactly what torchvision computes (the hooked run is checked against an unhooked
one). Tensor names: README.md.
"""
import argparse
import hashlib
import json
import os
import sys
from collections import OrderedDict

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiny  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BOX_FEATURES_N = 8  # box_features.I: RoIAlign (MultiScaleRoIAlign) output for the first proposals of image I
SIZE_LIMIT = 8_000_000  # bytes, all fixtures written here together


class StageRecorder:
    """Forward hooks on torchvision's modules, plus a wrapper around
    RegionProposalNetwork.filter_proposals (a method, not a module) for the proposal
    scores. Every tensor is cloned when seen: transform.postprocess later rewrites
    the detection dicts in place."""

    def __init__(self, model):
        self.rec = {}
        self.handles = []
        m = model
        for module, name in [(m.transform, "transform"), (m.backbone, "backbone"), (m.rpn.head, "rpn_head"),
                             (m.rpn.anchor_generator, "anchors"), (m.rpn, "rpn"),
                             (m.roi_heads.box_roi_pool, "box_roi_pool"),
                             (m.roi_heads.box_predictor, "box_predictor"), (m.roi_heads, "roi_heads")]:
            self.handles.append(module.register_forward_hook(self._fn(name)))
        self.rpn = m.rpn
        original = m.rpn.filter_proposals

        def filter_proposals(*args, **kwargs):
            out = original(*args, **kwargs)
            self._store("rpn_filter", out)
            return out
        m.rpn.filter_proposals = filter_proposals

    def _store(self, name, out):
        assert name not in self.rec, f"{name} ran twice"
        self.rec[name] = clone(out)

    def _fn(self, name):
        return lambda _mod, _inp, out: self._store(name, out)

    def remove(self):
        for h in self.handles:
            h.remove()
        del self.rpn.filter_proposals  # back to the class's method


def clone(x):
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, dict):
        return OrderedDict((k, clone(v)) for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return type(x)(clone(v) for v in x)
    if hasattr(x, "tensors") and hasattr(x, "image_sizes"):  # ImageList
        return {"tensors": x.tensors.detach().clone(), "image_sizes": [tuple(s) for s in x.image_sizes]}
    return x


def run_stages(model, images_u8):
    xs = [tiny.to_input(u8) for u8 in images_u8]
    rec = StageRecorder(model)
    with torch.no_grad():
        final = model(xs)
    rec.remove()
    with torch.no_grad():
        again = model(xs)
    for a, b in zip(final, again):  # the hooks changed nothing
        for k in a:
            assert torch.equal(a[k], b[k]), k
    return rec.rec, final


def stage_tensors(r, final, images_u8, full, final_masks_max):
    """The stages file's tensors, in file order (names documented in README.md)."""
    t = OrderedDict()
    for i, u8 in enumerate(images_u8):
        t[f"image.{i}"] = torch.from_numpy(u8.copy())
    image_list, _targets = r["transform"]
    t["transform.images"] = image_list["tensors"]
    t["transform.image_sizes"] = torch.tensor(image_list["image_sizes"], dtype=torch.int64)
    for k, v in r["backbone"].items():
        t[f"features.{k}"] = v
    if full:
        logits, deltas = r["rpn_head"]
        for lvl, (o, d) in enumerate(zip(logits, deltas)):
            t[f"rpn.objectness.{lvl}"] = o
            t[f"rpn.deltas.{lvl}"] = d
        t["anchors"] = r["anchors"][0]
    proposals, _losses = r["rpn"]
    boxes_f, scores_f = r["rpn_filter"]
    for i, p in enumerate(proposals):
        assert torch.equal(p, boxes_f[i])
        t[f"proposals.{i}"] = p
        if full:
            t[f"proposal_scores.{i}"] = scores_f[i]
    dets, _losses = r["roi_heads"]
    if full:
        class_logits, box_regression = r["box_predictor"]
        t["box_head.class_logits"] = class_logits
        t["box_head.box_regression"] = box_regression
        start = 0
        for i, p in enumerate(proposals):
            t[f"box_features.{i}"] = r["box_roi_pool"][start:start + min(BOX_FEATURES_N, len(p))]
            start += len(p)
        for i, d in enumerate(dets):
            t[f"detections.{i}.boxes"] = d["boxes"]
            t[f"detections.{i}.scores"] = d["scores"]
            t[f"detections.{i}.labels"] = d["labels"]
            t[f"detections.{i}.mask_probs"] = d["masks"]
    for i, f in enumerate(final):
        t[f"final.{i}.boxes"] = f["boxes"]
        t[f"final.{i}.scores"] = f["scores"]
        t[f"final.{i}.labels"] = f["labels"]
        t[f"final.{i}.masks"] = (f["masks"][:final_masks_max, 0] >= 0.5).to(torch.uint8)
    return OrderedDict((k, v.contiguous()) for k, v in t.items())


def robustness(model, r):
    """How far the reference is from places where a tiny numeric difference would
    change a discrete decision (membership in a top-k, the score threshold, the
    detection cap), and exact ties whose order torch leaves unspecified."""
    from torchvision.ops import box_iou
    out = []
    logits, _ = r["rpn_head"]
    pre = model.rpn._pre_nms_top_n["testing"]
    for lvl, o in enumerate(logits):
        for i in range(o.shape[0]):
            v = o[i].flatten()
            if v.numel() > pre:
                tk = torch.topk(v, pre + 1).values
                out.append(f"image {i} level {lvl}: objectness gap at the top-{pre} boundary {float(tk[-2] - tk[-1]):.2g}")
    for i, (b, s) in enumerate(zip(*r["rpn_filter"])):
        _u, inv, cnt = torch.unique(s, return_inverse=True, return_counts=True)
        for j in torch.nonzero(cnt > 1).flatten():
            idx = torch.nonzero(inv == j).flatten()
            iou = box_iou(b[idx], b[idx]).fill_diagonal_(0).max()
            out.append(f"image {i}: proposals {idx.tolist()} have exactly the same score {float(s[idx[0]]):.9g} "
                       f"(their order is torch's choice; max IoU between them {float(iou):.2f}, so NMS is unaffected "
                       f"when < {model.rpn.nms_thresh})")
    proposals = r["rpn"][0]
    image_sizes = r["transform"][0]["image_sizes"]
    class_logits, box_regression = r["box_predictor"]
    probs = torch.softmax(class_logits, -1)[:, 1:]
    thr = model.roi_heads.score_thresh
    out.append(f"closest class score to the threshold {thr}: |p - thr| = {float((probs - thr).abs().min()):.2g}")
    cap = model.roi_heads.detections_per_img
    model.roi_heads.detections_per_img = 10_000
    try:
        with torch.no_grad():
            boxes, scores, labels = model.roi_heads.postprocess_detections(class_logits, box_regression, proposals, image_sizes)
    finally:
        model.roi_heads.detections_per_img = cap
    for i, s in enumerate(scores):
        if len(s) > cap:
            out.append(f"image {i}: {len(s)} detections before the cap of {cap}, score gap at the cap {float(s[cap - 1] - s[cap]):.2g}")
        else:
            out.append(f"image {i}: {len(s)} detections, under the cap of {cap}")
        if len(torch.unique(s)) != len(s):
            out.append(f"image {i}: exactly tied detection scores")
    return out


def save_safetensors(tensors, path, metadata):
    """safetensors.torch.save_file, then the header rewritten with the metadata keys
    sorted: the library serialises `__metadata__` from a hash map, in an order that
    changes from run to run. Tensor entries, offsets and data stay as written."""
    import struct
    from safetensors.torch import load_file, save_file
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, path, metadata=metadata)
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the library pads the header with spaces to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    back = load_file(path)
    assert set(back) == set(tensors) and all(torch.equal(back[k], v) for k, v in tensors.items())


def save_legacy(obj, path):
    """torch.save(obj, path, _use_new_zipfile_serialization=False) with reproducible
    storage keys. The legacy format names each storage str(storage._cdata), its
    memory address (checkpoints from 2019 have keys like "94113029372000"), and
    writes the storages in the sorted order of those keys, so the bytes change from
    run to run. Here str() of those addresses is swapped, for this one call, for
    address-like keys drawn in a seeded order, so the storages are still not
    written in the order the pickle first mentions them (as in real files)."""
    import builtins
    import random
    import torch.serialization as ser
    cdatas = []
    for v in obj.values():
        c = v.untyped_storage()._cdata
        if c not in cdatas:
            cdatas.append(c)
    slots = list(range(len(cdatas)))
    random.Random(2019).shuffle(slots)
    names = {c: str(94_000_000_000_000 + 4096 * s) for c, s in zip(cdatas, slots)}

    class _StrMeta(type):  # so that isinstance(x, str) inside torch.serialization still works
        def __instancecheck__(cls, obj):
            return isinstance(obj, builtins.str)

        def __subclasscheck__(cls, sub):
            return issubclass(sub, builtins.str)

    class _Str(metaclass=_StrMeta):
        def __new__(cls, x="", *a):
            if not a and type(x) is int and x in names:
                return names[x]
            return builtins.str(x, *a)

    ser.str = _Str
    try:
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    finally:
        del ser.str
    data = open(path, "rb").read()
    assert all(k.encode() in data for k in names.values()), "storage keys not replaced"


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()[:16]


def describe(tensors):
    names = {torch.float32: "F32", torch.int64: "I64", torch.uint8: "U8"}
    return [f"  {k:26s} {names[v.dtype]:3s} {list(v.shape)}" for k, v in tensors.items()]


def write_model(name, outdir, full):
    import torchvision
    model, cfg = tiny.build(name)
    os.makedirs(outdir, exist_ok=True)
    sd = model.state_dict()
    written = []

    if full:
        p = os.path.join(outdir, "weights.pth")
        torch.save(sd, p)
        written.append(p)
        legacy = tiny.legacy_state_dict(sd)
        p = os.path.join(outdir, "weights_legacy.pth")
        save_legacy(legacy, p)
        written.append(p)
        # both load into a differently seeded model with strict=True and give the same tensors
        for path in written:
            fresh, _ = tiny.build(name, seed=cfg["seed"] + 1000)
            fresh.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
            for k, v in fresh.state_dict().items():
                assert torch.equal(v, sd[k]), (path, k)
        renamed = [k for k in legacy if k not in sd]
        print(f"{name}: weights_legacy.pth renames {len(renamed)} keys: " + ", ".join(renamed))

    p = os.path.join(outdir, "weights.safetensors")
    save_safetensors(sd, p, tiny.safetensors_metadata(cfg))
    written.append(p)

    images = tiny.fixture_images(cfg)
    r, final = run_stages(model, images)
    tensors = stage_tensors(r, final, images, full, cfg["final_masks_max"])
    p = os.path.join(outdir, "stages.safetensors")
    save_safetensors(tensors, p, {"model": name, "torch": torch.__version__,
                                    "torchvision": torchvision.__version__,
                                    "final_masks_max": str(cfg["final_masks_max"])})
    written.append(p)

    print(f"{name}: {sum(v.numel() for v in sd.values())} parameters in {len(sd)} tensors; config "
          + json.dumps({k: v for k, v in cfg.items() if k != "frozen_bn_eps_str"}))
    print(f"{name}: stages.safetensors")
    print("\n".join(describe(tensors)))
    sizes = r["transform"][0]["image_sizes"]
    for i, f in enumerate(final):
        s, m = f["scores"], tensors[f"final.{i}.masks"]
        area = (f["boxes"][: len(m), 2:] - f["boxes"][: len(m), :2]).prod(1).sum()
        print(f"{name}: image {i} {tuple(images[i].shape[:2])} -> resized {tuple(sizes[i])}: "
              f"{len(r['rpn'][0][i])} proposals, {len(s)} detections, scores {float(s.max()):.3f}..{float(s.min()):.3f}, "
              f"per label {torch.bincount(f['labels'], minlength=len(cfg['classes'])).tolist()}, "
              f"first {len(m)} masks fill {float(m.sum() / area):.2f} of their boxes")
    for line in robustness(model, r):
        print(f"{name}: {line}")
    for path in written:
        print(f"  {os.path.relpath(path, REPO)}  {os.path.getsize(path)} bytes  sha256 {sha(path)}")
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "Tests", "MaskRCNNTests", "Fixtures"))
    ap.add_argument("--only", choices=["tiny", "basic"])
    a = ap.parse_args()
    torch.set_num_threads(1)
    written = []
    if a.only in (None, "tiny"):
        written += write_model("tiny", os.path.join(a.out, "tiny"), full=True)
    if a.only in (None, "basic"):
        written += write_model("basic", os.path.join(a.out, "basic"), full=False)
    total = sum(os.path.getsize(p) for p in written)
    print(f"total {total} bytes ({total / 1e6:.2f} MB) in {len(written)} files")
    if a.only is None and total >= SIZE_LIMIT:
        sys.exit(f"fixtures exceed {SIZE_LIMIT} bytes")


if __name__ == "__main__":
    main()
