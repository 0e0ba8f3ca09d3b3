#!/usr/bin/env python3
"""Train the shapes sample model: torchvision's MaskRCNN (model.py) from scratch, on
scenes generated on the fly by generate.make_scene(seed, i) — iteration t uses scenes
t*batch .. t*batch+batch-1 of the training seed, so the data, like everything else, is
a function of the seed, and a resumed run sees exactly the scenes an uninterrupted one
would have seen.

    python tools/shapes/train.py --out /tmp/shapes_run11 --seed 0 --iters 3600 \
        --pretrain-steps 3000 --pretrain-cut 0.6

Two phases in one run. No pretrained weights can be downloaded, so the backbone first
learns the five shapes on crops (--pretrain-steps batches of --pretrain-batch 96-px
crops from generate.make_crop: one shape centred and filling most of the crop, as an
object does its RoI, in a fraction --pretrain-cut of them cut by the crop border or
partly covered, as scene shapes often are; global-average-pooled layer4 -> linear;
`nn.BatchNorm2d(eps=1e-5)` on batch statistics), the way a Mask R-CNN usually starts
from ImageNet weights. Then the running statistics are recomputed exactly on scenes
(cumulative average of per-image statistics over --bn-calib scenes, backbone only),
every BatchNorm is put in eval mode, and the detector trains with them frozen: the
network that is trained computes (x - running_mean) / sqrt(running_var + 1e-5) * weight
+ bias, which is exactly torchvision's FrozenBatchNorm2d(eps=1e-5) that segd and
export.py use (export.py checks the two give the same detections). Why: the two recipes
without pretraining (BatchNorm on per-image statistics, frozen at 17% or 60% of the run)
got only 70% of the held-out shapes' classes right even when handed the ground-truth
boxes, and the switch from per-image to population statistics cost a fifth of the run to
recover from.
--pretrain-steps 0 gives the old recipe (--freeze-bn-at applies only then).
--pretrain-head roi pretrains the detector's own classification path instead (FPN,
RoIAlign, box head, class scores); measured worse in the full recipe (README).
--pretrain-cut 0 gives the crops of the recipe before (README: mask AP50 0.895 against
0.912 with 1200 pretraining steps; 2000 steps on the cut crops: 0.941; 3000 steps and
3600 detection steps: 0.961).

Progress goes to OUT/train.log; OUT/ckpt.pt is rewritten every --ckpt-every iterations
(model, optimizer, RNG state, elapsed time) and `--resume` continues from it. The result
is OUT/final.pt (state dict with BatchNorm names, config, the command, the duration);
export.py turns it into the safetensors file.
"""
import argparse
import json
import math
import os
import shlex
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate  # noqa: E402
import model as M  # noqa: E402

TRAIN_KW = dict(  # training-only knobs (inference behaviour is torchvision's default)
    rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=1000,
    box_batch_size_per_image=128,
)


def scene_tensors(seed, index):
    """One training sample as torchvision wants it: (image CHW float [0,1], target)."""
    pil, instances, meta = generate.make_scene(seed, index)
    if not meta["png"]:  # the model sees what a JPEG file would hold
        pil = generate.jpeg_roundtrip(pil, meta["jpeg_quality"])
    img = M.to_tensor(pil)
    h, w = img.shape[1:]
    if instances:
        masks = torch.from_numpy(np.stack([i["mask"] for i in instances])).to(torch.uint8)
        boxes = []
        for m in masks:
            ys, xs = torch.nonzero(m, as_tuple=True)
            boxes.append([xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1])
        boxes = torch.tensor(boxes, dtype=torch.float32)
        labels = torch.tensor([i["category_id"] for i in instances], dtype=torch.int64)
    else:
        masks = torch.zeros((0, h, w), dtype=torch.uint8)
        boxes = torch.zeros((0, 4), dtype=torch.float32)
        labels = torch.zeros((0,), dtype=torch.int64)
    return img, dict(boxes=boxes, labels=labels, masks=masks)


class Scenes(torch.utils.data.Dataset):
    def __init__(self, seed):
        self.seed = seed

    def __getitem__(self, index):
        return scene_tensors(self.seed, index)


class Crops(torch.utils.data.Dataset):
    """Shape-classification crops (generate.make_crop) for backbone pretraining:
    (image, class id 1..5, the shape's box); `cut` is make_crop's."""
    def __init__(self, seed, cut):
        self.seed, self.cut = seed, cut

    def __getitem__(self, index):
        pil, cls, box = generate.make_crop(self.seed, index, cut=self.cut)
        return M.to_tensor(pil), cls, torch.from_numpy(box).float()


def in_order(dataset, first, stop, batch, args):
    """Items first .. stop-1 of `dataset` in order (batches of `batch`; None: one at a
    time), made ahead in --workers processes. Its own generator leaves the global RNG
    alone."""
    return iter(torch.utils.data.DataLoader(
        dataset, batch_size=batch, num_workers=args.workers, sampler=range(first, stop),
        prefetch_factor=4 if args.workers else None,
        generator=torch.Generator().manual_seed(args.seed)))


def pretrained_by(args, name):
    """Whether the model parameter `name` is one that --pretrain-head trains."""
    if args.pretrain_head == "gap":
        return name.startswith("backbone.body.")
    return name.startswith(("backbone.", "roi_heads.box_head.", "roi_heads.box_predictor.cls_score."))


def resize_crops(x, box, size):
    """A batch of crops and their boxes at size x size (antialiased when shrinking)."""
    if x.shape[-1] == size:
        return x, box
    scale = size / x.shape[-1]
    return nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                     align_corners=False, antialias=True), box * scale


def pretrain_backbone(model, args, log, resume=None, save=None):
    """The first phase (see the module docstring): the network learns to tell the five
    shapes apart on crops, with BatchNorm on batch statistics over --pretrain-batch crops.
    --pretrain-head gap: the ResNet body alone, global-average-pooled layer4 -> a linear
    layer of its own. --pretrain-head roi: the path the detector classifies through —
    body, FPN, RoIAlign of the shape's box (the model's own MultiScaleRoIAlign), the box
    head and the class scores of the box predictor — so everything between the pixels and
    the class scores starts trained. Step k's crops are resized to --pretrain-sizes[k mod n].
    `resume` is what `save(step, state)` was last given; both are for checkpoints."""
    rh, normalize = model.roi_heads, model.transform.normalize
    if args.pretrain_head == "gap":
        with torch.random.fork_rng():  # the detection phase's RNG stream stays the seed's
            torch.manual_seed(args.seed + 1)
            head = nn.Linear(args.widths[-1], len(generate.CLASSES))
        first_class = 1  # the linear layer's outputs are classes 1..5

        def classify(x, box):
            return head(model.backbone.body(normalize(x))["3"].mean(dim=(2, 3)))
    else:
        head = nn.Module()  # nothing of its own: the detector's modules are what trains
        first_class = 0  # cls_score's outputs are background + classes 1..5

        def classify(x, box):
            feats = model.backbone(normalize(x))
            pooled = rh.box_roi_pool(feats, list(box[:, None]), [tuple(x.shape[-2:])] * len(x))
            return rh.box_predictor.cls_score(rh.box_head(pooled))
    params = [p for n, p in model.named_parameters() if pretrained_by(args, n)]
    opt = torch.optim.AdamW(params + list(head.parameters()), lr=args.pretrain_lr,
                            weight_decay=args.weight_decay)
    start = 0
    if resume:
        start = resume["step"]
        head.load_state_dict(resume["head"])
        opt.load_state_dict(resume["opt"])

    loader = in_order(Crops(args.seed, args.pretrain_cut), start * args.pretrain_batch,
                      args.pretrain_steps * args.pretrain_batch, args.pretrain_batch, args)
    model.backbone.train()
    t0, right, seen, loss_sum = time.time(), 0, 0, 0.0
    for it in range(start, args.pretrain_steps):
        # 100 warm-up steps, then cosine to zero: a short run that has to end settled
        lr = args.pretrain_lr * min(1.0, (it + 1) / 100) * 0.5 * (
            1 + math.cos(math.pi * it / args.pretrain_steps))
        for g in opt.param_groups:
            g["lr"] = lr
        x, cls, box = next(loader)
        x, box = resize_crops(x, box, args.pretrain_sizes[it % len(args.pretrain_sizes)])
        y = cls - first_class
        logits = classify(x, box)
        loss = nn.functional.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        right += int((logits.argmax(1) == y).sum())
        seen += len(y)
        loss_sum += float(loss) * len(y)
        if (it + 1) % args.log_every == 0 or it + 1 == args.pretrain_steps:
            log(f"pretrain {it + 1}/{args.pretrain_steps} loss {loss_sum / seen:.4f} "
                f"accuracy {right / seen:.3f} lr {lr:.2e} {(time.time() - t0) / 60:.1f} min "
                f"load {os.getloadavg()[0]:.1f}")
            right, seen, loss_sum = 0, 0, 0.0
        if save and (it + 1) % args.ckpt_every == 0 and it + 1 < args.pretrain_steps:
            save(it + 1, dict(step=it + 1, head=head.state_dict(), opt=opt.state_dict()))
    # held-out crops (an index range training never reaches), each generated once and
    # classified at every size, on batch statistics
    n, crops, right = 1000, Crops(args.seed, args.pretrain_cut), [0] * len(args.pretrain_sizes)
    with torch.no_grad():
        for k in range(0, n, args.pretrain_batch):
            batch = [crops[10_000_000 + i] for i in range(k, min(k + args.pretrain_batch, n))]
            y = torch.tensor([b[1] for b in batch]) - first_class
            x0, box0 = torch.stack([b[0] for b in batch]), torch.stack([b[2] for b in batch])
            for j, size in enumerate(args.pretrain_sizes):
                x, box = resize_crops(x0, box0, size)
                right[j] += int((classify(x, box).argmax(1) == y).sum())
    accuracy = ", ".join(f"{r / n:.3f} at {size} px" for r, size in zip(right, args.pretrain_sizes))
    log(f"pretrain done: {args.pretrain_steps} steps of {args.pretrain_batch} crops in "
        f"{(time.time() - t0) / 60:.1f} min; held-out crop accuracy {accuracy}")


def bn_modules(model):
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def set_train_mode(model, bn_frozen):
    model.train()
    if bn_frozen:
        for m in bn_modules(model):
            m.eval()


@torch.no_grad()
def calibrate_bn(model, seed, first_index, count, log):
    """Exact running statistics: cumulative average of per-image batch statistics
    (the same per-image statistics the network was trained with)."""
    model.train()
    for m in bn_modules(model):
        m.reset_running_stats()
        m.momentum = None
    for k in range(count):
        img, _ = scene_tensors(seed, first_index + k)
        il, _ = model.transform([img])
        model.backbone.body(il.tensors)
    for m in bn_modules(model):
        m.momentum = 0.1
    log(f"BatchNorm statistics recomputed over {count} images; BatchNorm frozen from here")


def lr_at(it, args):
    """Linear warm-up, then constant, then x0.1 at each --decay-at fraction of --iters."""
    if it < args.warmup:
        return args.lr * (0.001 + 0.999 * it / args.warmup)
    steps = sum(it >= round(f * args.iters) for f in args.decay_at)
    return args.lr * (0.1 ** steps)


def input_size(it, args):
    """(min_size, max_size) for iteration `it`: --early-size for the first --early-until
    of the run (cheaper iterations while the features take shape), the model's own after."""
    if it < round(args.early_until * args.iters) and args.early_size:
        return args.early_size
    return (args.min_size, args.max_size)


def save_atomic(obj, path):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description="train the segd shapes model (torchvision MaskRCNN)")
    ap.add_argument("--out", default="/tmp/shapes_run")
    ap.add_argument("--seed", type=int, default=0, help="training data + init seed")
    ap.add_argument("--iters", type=int, default=3600)
    ap.add_argument("--batch", type=int, default=2, help="images per optimizer step (one per forward)")
    ap.add_argument("--lr", type=float, default=1e-3, help="AdamW peak learning rate")
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--pretrained-lr-mult", type=float, default=1.0,
                    help="detection phase: learning rate of what --pretrain-head trains "
                         "(gap: the ResNet body; roi: body, FPN, box head, class scores) "
                         "relative to --lr")
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--decay-at", type=lambda v: [float(x) for x in v.split(",")],
                    default=[0.7, 0.9], help="fractions of --iters where the lr drops x0.1")
    ap.add_argument("--freeze-bn-at", type=float, default=0.6,
                    help="without pretraining: fraction of --iters after which BatchNorm "
                         "runs on frozen statistics")
    ap.add_argument("--early-size", type=lambda v: tuple(int(x) for x in v.split(",")),
                    default=(288, 480), help="min,max input size for the first --early-until")
    ap.add_argument("--early-until", type=float, default=0.4, help="fraction of --iters")
    ap.add_argument("--bn-calib", type=int, default=200)
    ap.add_argument("--pretrain-steps", type=int, default=3000,
                    help="backbone pretraining on shape crops before detection (0: none); "
                         "BatchNorm is then calibrated and frozen from the first detection step")
    ap.add_argument("--pretrain-batch", type=int, default=64)
    ap.add_argument("--pretrain-lr", type=float, default=2e-3)
    ap.add_argument("--pretrain-head", choices=["gap", "roi"], default="gap",
                    help="what classifies the crops: gap = pooled layer4 -> linear; roi = the "
                         "detector's own FPN, RoIAlign, box head and class scores")
    ap.add_argument("--pretrain-sizes", type=lambda v: tuple(int(x) for x in v.split(",")),
                    default=(generate.CROP_SIZE,), help="crop sizes, one per step in turn")
    ap.add_argument("--pretrain-cut", type=float, default=0.6,
                    help="fraction of crops whose shape is cut by the crop border or partly "
                         "covered (generate.cut_crop)")
    ap.add_argument("--widths", type=lambda v: tuple(int(x) for x in v.split(",")),
                    default=M.Config.widths, help="ResNet stage widths")
    ap.add_argument("--representation-size", type=int, default=M.Config.representation_size,
                    help="box head (TwoMLPHead) width")
    ap.add_argument("--min-size", type=int, default=384)
    ap.add_argument("--max-size", type=int, default=640)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1, help="scene generator processes")
    ap.add_argument("--ckpt-every", type=int, default=200)
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.makedirs(args.out, exist_ok=True)
    logf = open(os.path.join(args.out, "train.log"), "a")

    def log(msg):
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    # --resume continues a run exactly (same scenes, same RNG state), so it is not part
    # of the command that describes the result
    command = "tools/shapes/train.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:] if a != "--resume")
    cfg = M.config_for_training(args)
    torch.manual_seed(args.seed)
    model = M.build(cfg, frozen=False, **TRAIN_KW)
    group_keys = [(pre, dec) for pre in (True, False) for dec in (True, False)]
    groups = {k: [] for k in group_keys}  # (pretrained?, weight-decayed?) -> parameters
    for n, p in model.named_parameters():
        groups[(pretrained_by(args, n), p.ndim > 1)].append(p)
    opt = torch.optim.AdamW([dict(params=groups[(pre, dec)],
                                  weight_decay=args.weight_decay if dec else 0.0)
                             for pre, dec in group_keys], lr=args.lr)

    def set_lr(lr):  # what pretraining trained at --pretrained-lr-mult of the rest
        for g, (pre, _) in zip(opt.param_groups, group_keys):
            g["lr"] = lr * (args.pretrained_lr_mult if pre else 1.0)
    freeze_it = int(round(args.freeze_bn_at * args.iters))
    calib_first = 10_000_000  # scene indices for calibration, far from the training ones

    start, elapsed, cpu, bn_frozen = 0, 0.0, 0.0, False
    pretrain_state = None  # while pretraining is unfinished: dict(step, head, opt)
    ckpt_path = os.path.join(args.out, "ckpt.pt")
    if args.resume and os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        torch.set_rng_state(ck["torch_rng"])
        start, elapsed, bn_frozen = ck["iter"], ck["elapsed"], ck["bn_frozen"]
        cpu = ck.get("cpu", 0.0)
        pretrain_state = ck.get("pretrain")
        log(f"resumed at iteration {start} ({elapsed / 60:.1f} min done)")
    else:
        log(f"start: {command}")
        log(f"config {cfg.to_json()} train {json.dumps(TRAIN_KW)} "
            f"params {M.param_count(model)} threads {args.threads}")

    def checkpoint(it, pretrain=None, extra_seconds=(0.0, 0.0)):
        save_atomic(dict(model=model.state_dict(), opt=opt.state_dict(), iter=it,
                         elapsed=elapsed + extra_seconds[0], cpu=cpu + extra_seconds[1],
                         bn_frozen=bn_frozen, pretrain=pretrain,
                         torch_rng=torch.get_rng_state(), args=vars(args)), ckpt_path)

    pretrained = start > 0 or bn_frozen
    if args.pretrain_steps and not pretrained:
        t0, c0 = time.time(), time.process_time()
        pretrain_backbone(model, args, log, pretrain_state, save=lambda step, st: checkpoint(
            0, st, (time.time() - t0, time.process_time() - c0)))
        elapsed += time.time() - t0
        cpu += time.process_time() - c0
        calibrate_bn(model, args.seed, calib_first, args.bn_calib, log)
        bn_frozen = True
        checkpoint(0)

    # scenes are generated one step ahead in a worker process (pure function of the index)
    loader = in_order(Scenes(args.seed), start * args.batch, args.iters * args.batch, None, args)
    set_train_mode(model, bn_frozen)
    t_last, c_last = time.time(), time.process_time()
    sums, n_sums = {}, 0
    for it in range(start, args.iters):
        size = input_size(it, args)
        if (model.transform.min_size[0], model.transform.max_size) != size:
            model.transform.min_size, model.transform.max_size = (size[0],), size[1]
            log(f"input size min {size[0]} max {size[1]} from iteration {it}")
        if it == freeze_it and not bn_frozen and freeze_it < args.iters:
            calibrate_bn(model, args.seed, calib_first, args.bn_calib, log)
            bn_frozen = True
            set_train_mode(model, bn_frozen)
        lr = lr_at(it, args)
        set_lr(lr)
        opt.zero_grad(set_to_none=True)
        for k in range(args.batch):
            img, target = next(loader)
            losses = model([img], [target])
            loss = sum(losses.values()) / args.batch
            loss.backward()
            for name, v in losses.items():
                sums[name] = sums.get(name, 0.0) + v.item()
            n_sums += 1
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        now = time.time()
        elapsed += now - t_last
        t_last = now
        cpu += time.process_time() - c_last  # main process only (not the scene worker)
        c_last = time.process_time()
        if (it + 1) % args.log_every == 0 or it + 1 == args.iters:
            parts = " ".join(f"{k[5:]} {v / n_sums:.4f}" for k, v in sums.items())
            total = sum(sums.values()) / n_sums
            log(f"it {it + 1}/{args.iters} loss {total:.4f} ({parts}) lr {lr:.2e} "
                f"gnorm {float(grad_norm):.2f} {'bnfrozen ' if bn_frozen else ''}"
                f"elapsed {elapsed / 60:.1f} min cpu {cpu / 60:.1f} min load {os.getloadavg()[0]:.1f}")
            sums, n_sums = {}, 0
        if (it + 1) % args.ckpt_every == 0:
            checkpoint(it + 1)

    model.transform.min_size, model.transform.max_size = (args.min_size,), args.max_size
    if not bn_frozen:  # --freeze-bn-at 1.0: calibrate at the end so the stats are exact
        calibrate_bn(model, args.seed, calib_first, args.bn_calib, log)
    final = os.path.join(args.out, "final.pt")
    save_atomic(dict(state_dict=model.state_dict(), config=json.loads(cfg.to_json()),
                     command=command, train_seconds=elapsed, train_cpu_seconds=cpu,
                     iters=args.iters,
                     batch=args.batch, threads=args.threads), final)
    checkpoint(args.iters)
    log(f"done: {args.iters} iterations in {elapsed / 60:.1f} min wall "
        f"({cpu / 60:.1f} min CPU, main process) -> {final}")


if __name__ == "__main__":
    main()
