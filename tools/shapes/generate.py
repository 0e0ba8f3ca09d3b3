#!/usr/bin/env python3
"""Synthetic-shapes scenes for segd's sample model: images + COCO instance annotations.

Every scene is a pure function of (seed, index): `make_scene(seed, i)` draws from
numpy's PCG64 seeded with [seed, i], so the training loop can generate scenes on the fly
and a dataset written to disk by this CLI holds exactly the scenes the same seed gives
in memory. Seeds are separate streams: validation (seed 1000) never repeats a training
scene (seed 0).

Classes (ids 1..5, 0 is background): circle, square, triangle, star, hexagon.

A scene: 320..800 px in each dimension; a background made of a gradient (linear or
radial) blended with a texture (value noise, stripes or checker) and tinted; 1..10
shapes in random colours that contrast with what lies under them, sizes from 6% of the
shorter side, and at least 24 px (circumscribed diameter), to 40% of it (half of them
log-uniform, half uniform), rotated, allowed to
overlap and to cross the image border. Later shapes occlude earlier ones; each
instance mask is the visible part only, and an instance whose visible area falls under
half of its full shape or under 40 px is dropped (placement is retried a few times
first so that this stays rare). Pixel noise, sometimes blur, and JPEG compression for
the JPEG files.

    generate.py OUT_DIR --count N --seed S [--start I]

writes OUT_DIR/images/NNNNNN.{jpg,png} and OUT_DIR/annotations.json (COCO: masks as
compressed RLE with string counts, area = mask area, bbox = mask bbox, iscrowd 0).

`make_crop(seed, i)` draws from the same parts (background, paint, camera) a 96-px crop
of one labelled shape for train.py's backbone pretraining.
"""
import argparse
import io
import json
import math
import os
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from pycocotools import mask as mask_util

CLASSES = ["circle", "square", "triangle", "star", "hexagon"]  # ids 1..5
# Smallest circumscribed diameter: 6% of the shorter side, at least 24 px. At the model's
# input size (shorter side 384) that is >= 23 px; the first generator went down to 16 px
# in an 800 px image, 7.7 px at the input, where a hexagon and a circle differ by less
# than a pixel of blurred, JPEG-compressed outline.
MIN_SIZE_PX = 24
MIN_SIZE_FRAC = 0.06
MAX_SIZE_FRAC = 0.40      # largest circumscribed diameter, fraction of the shorter side
MIN_VISIBLE_FRAC = 0.50   # drop instances less visible than this (a third of a
                          # triangle or hexagon is no longer either) ...
MIN_VISIBLE_AREA = 40     # ... or with fewer visible pixels than this
SUPERSAMPLE = 4           # anti-aliasing factor for drawing shapes


# ----------------------------------------------------------------------------- shapes

def shape_polygon(cls, cx, cy, d, angle):
    """Vertices (K, 2) of class `cls` (1..5) centred at (cx, cy), circumscribed diameter d."""
    r = d / 2.0
    if cls == 1:  # circle
        n, radii, start = 96, [r], 0.0
    elif cls == 2:  # square
        n, radii, start = 4, [r], math.pi / 4
    elif cls == 3:  # triangle (equilateral)
        n, radii, start = 3, [r], -math.pi / 2
    elif cls == 4:  # star, 5 points, inner radius 0.45 r
        n, radii, start = 10, [r, 0.45 * r], -math.pi / 2
    elif cls == 5:  # hexagon
        n, radii, start = 6, [r], 0.0
    else:
        raise ValueError(cls)
    t = start + angle + np.arange(n) * (2 * math.pi / n)
    rad = np.array([radii[i % len(radii)] for i in range(n)])
    return np.stack([cx + rad * np.cos(t), cy + rad * np.sin(t)], axis=1)


def polygon_area(p):
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def visible_enough(visible_px, full_area):
    """Whether a shape with `visible_px` of its `full_area` pixels in sight still counts as
    an instance (MIN_VISIBLE_AREA, MIN_VISIBLE_FRAC)."""
    return visible_px >= max(MIN_VISIBLE_AREA, MIN_VISIBLE_FRAC * full_area)


def pixels(r, h, w):
    """The h x w mask of the pixels a rasterize() result covers (coverage >= 0.5)."""
    cov, x0, y0 = r
    m = np.zeros((h, w), bool)
    m[y0:y0 + cov.shape[0], x0:x0 + cov.shape[1]] = cov >= 0.5
    return m


def rasterize(poly, h, w):
    """Coverage in [0, 1] (float32, h x w) of `poly`, by 4x supersampling, drawn only in
    the polygon's bounding box. Returns (coverage crop, x0, y0) or None if off-image."""
    x0 = max(int(math.floor(poly[:, 0].min())) - 1, 0)
    y0 = max(int(math.floor(poly[:, 1].min())) - 1, 0)
    x1 = min(int(math.ceil(poly[:, 0].max())) + 2, w)
    y1 = min(int(math.ceil(poly[:, 1].max())) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return None
    s = SUPERSAMPLE
    cw, ch = x1 - x0, y1 - y0
    canvas = Image.new("L", (cw * s, ch * s), 0)
    # pixel (i, j) covers [j, j+1) x [i, i+1); supersample centres at (j + (k + .5) / s)
    pts = [((x - x0) * s - 0.5, (y - y0) * s - 0.5) for x, y in poly]
    ImageDraw.Draw(canvas).polygon(pts, fill=255)
    a = np.asarray(canvas, dtype=np.float32).reshape(ch, s, cw, s).mean(axis=(1, 3)) / 255.0
    return a, x0, y0


# ------------------------------------------------------------------------- background

def _colour(rng):
    return rng.uniform(0, 255, size=3).astype(np.float32)


def _coords(h, w):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy, xx


def _value_noise(rng, h, w, cells):
    g = rng.uniform(0, 1, size=(cells + 1, cells + 1)).astype(np.float32)
    img = Image.fromarray(g, mode="F").resize((w, h), Image.BICUBIC)
    return np.clip(np.asarray(img), 0, 1)


def background(rng, h, w):
    yy, xx = _coords(h, w)
    # base: linear or radial gradient between two colours
    c0, c1 = _colour(rng), _colour(rng)
    if rng.uniform() < 0.6:
        a = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(a) + yy * math.sin(a)
    else:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        t = np.hypot(xx - cx, yy - cy)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c0 + (c1 - c0) * t[..., None]
    # texture blended on top
    kind = rng.choice(["none", "noise", "stripes", "checker"], p=[0.15, 0.35, 0.25, 0.25])
    if kind != "none":
        d0, d1 = _colour(rng), _colour(rng)
        if kind == "noise":
            m = _value_noise(rng, h, w, int(rng.integers(2, 24)))
            if rng.uniform() < 0.5:  # second octave
                m = 0.65 * m + 0.35 * _value_noise(rng, h, w, int(rng.integers(24, 80)))
        else:
            a = rng.uniform(0, math.pi)
            period = rng.uniform(6, 64)
            u = (xx * math.cos(a) + yy * math.sin(a)) / period
            if kind == "stripes":
                m = 0.5 + 0.5 * np.sin(2 * math.pi * u)
                if rng.uniform() < 0.5:
                    m = (m > 0.5).astype(np.float32)
            else:
                v = (-xx * math.sin(a) + yy * math.cos(a)) / period
                m = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
        alpha = rng.uniform(0.25, 1.0)
        tex = d0 + (d1 - d0) * m[..., None]
        img = img * (1 - alpha) + tex * alpha
    # tint
    img = img * rng.uniform(0.7, 1.15, size=3).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.float32)


# ------------------------------------------------------------------------------ scene

def _contrast_ok(rng, img, cov, x0, y0, under_colours):
    """Pick an object colour that stands out from the pixels it will cover and from the
    colours of the shapes it overlaps. Returns the best of up to 40 tries."""
    region = img[y0:y0 + cov.shape[0], x0:x0 + cov.shape[1]][cov > 0.5]
    if region.shape[0] > 2000:
        region = region[rng.choice(region.shape[0], 2000, replace=False)]
    best, best_score = None, -1.0
    for _ in range(40):
        c = _colour(rng)
        score = 1e9
        if region.shape[0]:
            dist = np.linalg.norm(region - c, axis=1)
            score = min(score, float(np.percentile(dist, 15)))
        for u in under_colours:
            score = min(score, float(np.linalg.norm(u - c)))
        if score > best_score:
            best, best_score = c, score
        if score >= 90:
            break
    return best


def paint(rng, img, cov, x0, y0, colour):
    """Draw a shape's coverage `cov` at (x0, y0) into `img` in place: `colour` with a
    gentle linear shading and a little texture noise."""
    ch, cw = cov.shape
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    a = rng.uniform(0, 2 * math.pi)
    t = (xx * math.cos(a) + yy * math.sin(a)) / max(ch, cw, 1)
    shade = 1.0 + rng.uniform(-0.25, 0.25) * (t - 0.5)
    fill = colour[None, None, :] * shade[..., None]
    fill = fill + rng.normal(0, rng.uniform(0, 6), size=fill.shape).astype(np.float32)
    sub = img[y0:y0 + ch, x0:x0 + cw]
    img[y0:y0 + ch, x0:x0 + cw] = sub * (1 - cov[..., None]) + fill * cov[..., None]


def camera(rng, img):
    """float image -> PIL RGB: optional blur, pixel noise, occasional grayscale."""
    if rng.uniform() < 0.2:
        pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        pil = pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
        img = np.asarray(pil, dtype=np.float32)
    img = img + rng.normal(0, rng.uniform(0, 10), size=img.shape).astype(np.float32)
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if rng.uniform() < 0.05:
        g = np.asarray(Image.fromarray(out).convert("L"))
        out = np.repeat(g[..., None], 3, axis=2)
    return Image.fromarray(out, "RGB")


def make_scene(seed, index):
    """-> (PIL RGB image, [ {category_id, mask (h, w) bool} ], meta dict)."""
    rng = np.random.default_rng([int(seed), int(index)])
    w, h = int(rng.integers(320, 801)), int(rng.integers(320, 801))
    img = background(rng, h, w)
    area_factor = (h * w) / (320 * 320)
    n_obj = int(rng.integers(1, min(10, 3 + int(2 * area_factor)) + 1))
    dmax = MAX_SIZE_FRAC * min(h, w)
    dmin = max(MIN_SIZE_PX, MIN_SIZE_FRAC * min(h, w))

    objs = []  # dict(cls, full_area, visible (h, w) bool, colour)
    for _ in range(n_obj):
        cls = int(rng.integers(1, 6))
        if rng.uniform() < 0.5:  # half log-uniform (many small), half uniform (many large)
            d = float(math.exp(rng.uniform(math.log(dmin), math.log(dmax))))
        else:
            d = float(rng.uniform(dmin, dmax))
        angle = rng.uniform(0, 2 * math.pi)
        chosen = None
        for attempt in range(12):
            # centre may lie a little outside so shapes get cut by the border sometimes
            m = 0.15 * d
            cx, cy = rng.uniform(-m, w + m), rng.uniform(-m, h + m)
            poly = shape_polygon(cls, cx, cy, d, angle)
            r = rasterize(poly, h, w)
            if r is None:
                continue
            cov, x0, y0 = r
            full_area = polygon_area(poly)
            new = pixels(r, h, w)
            ok = visible_enough(new.sum(), full_area)
            if ok:
                for o in objs:  # would this placement bury an earlier shape?
                    if not visible_enough(np.count_nonzero(o["visible"] & ~new), o["full_area"]):
                        ok = False
                        break
            chosen = (poly, cov, x0, y0, full_area, new)
            if ok:
                break
        if chosen is None:
            continue
        poly, cov, x0, y0, full_area, new = chosen
        under = [o["colour"] for o in objs if np.any(o["visible"] & new)]
        colour = _contrast_ok(rng, img, cov, x0, y0, under)
        paint(rng, img, cov, x0, y0, colour)
        for o in objs:
            o["visible"] &= ~new
        objs.append(dict(cls=cls, full_area=full_area, visible=new, colour=colour))

    pil = camera(rng, img)

    instances = []
    for o in objs:
        area = int(o["visible"].sum())
        if not visible_enough(area, o["full_area"]):
            continue
        instances.append(dict(category_id=o["cls"], mask=o["visible"]))
    meta = dict(jpeg_quality=int(rng.integers(75, 96)), png=bool(rng.uniform() < 0.3))
    return pil, instances, meta


def jpeg_roundtrip(pil, quality):
    """What a model sees of a scene saved as JPEG (training uses this in memory)."""
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


CROP_SIZE = 96  # pretraining crops (train.py --pretrain-steps)


def make_crop(seed, index, size=CROP_SIZE, cut=0.0):
    """One shape-classification sample for backbone pretraining: -> (PIL RGB size x size,
    class id 1..5, the shape's box [x0, y0, x1, y1] clipped to the crop). The same
    background, colours, shading and camera as a scene; the labelled shape is drawn last,
    centred within 8% and filling 55-90% of the crop — what a box head sees of an object
    in its RoI — over 0-3 other shapes centred out towards the edges. With probability
    `cut` the crop is instead one of cut_crop's, where the shape is cut by the crop border
    or partly covered (cut=0 gives exactly the crops from before the option). A pure
    function of (seed, index, cut), like make_scene."""
    if cut:
        rng = np.random.default_rng([int(seed), int(index), 2])
        crop = cut_crop(rng, size) if rng.uniform() < cut else None
        if crop is not None:
            return crop
    rng = np.random.default_rng([int(seed), int(index), 1])
    img = background(rng, size, size)

    def draw(poly):  # in a colour that stands out from what it covers
        r = rasterize(poly, size, size)
        if r is not None:
            cov, x0, y0 = r
            paint(rng, img, cov, x0, y0, _contrast_ok(rng, img, cov, x0, y0, []))

    for _ in range(int(rng.integers(0, 4))):  # distractors, under the labelled shape
        d = rng.uniform(0.2, 0.6) * size
        a, dist = rng.uniform(0, 2 * math.pi), rng.uniform(0.5, 0.9) * size
        poly = shape_polygon(int(rng.integers(1, 6)), size / 2 + dist * math.cos(a),
                             size / 2 + dist * math.sin(a), d, rng.uniform(0, 2 * math.pi))
        draw(poly)
    cls = int(rng.integers(1, 6))
    d = rng.uniform(0.55, 0.9) * size
    c = size / 2 + rng.uniform(-0.08, 0.08, size=2) * size
    poly = shape_polygon(cls, c[0], c[1], d, rng.uniform(0, 2 * math.pi))
    draw(poly)
    pil = camera(rng, img)
    if rng.uniform() < 0.7:  # as in training, most images went through JPEG
        pil = jpeg_roundtrip(pil, int(rng.integers(75, 96)))
    box = np.concatenate([poly.min(axis=0), poly.max(axis=0)]).clip(0, size)
    return pil, cls, box


def cut_crop(rng, size):
    """A crop like make_crop's but harder, as shapes in scenes are: the labelled shape is
    drawn first, in half the crops shifted by 20-45% of its size (on each axis with
    probability 0.6) so the crop border cuts it, then 0-2 shapes go on top of it, each
    leaving at least half of it visible; the box is the visible part's. None where less
    than half of the shape (or under 40 px) stays visible. Why: the crops above are easier
    than scene shapes — a model at 99.5% on them named only 73 of 102 circles and hexagons
    in held-out scenes given their true boxes, most misses cut by the image border (a
    circle cut straight looks like a polygon) or covered (tools/shapes/README.md)."""
    img = background(rng, size, size)
    cls = int(rng.integers(1, 6))
    d = rng.uniform(0.55, 0.9) * size
    if rng.uniform() < 0.5:
        off = (rng.uniform(0.2, 0.45, size=2) * d * rng.choice([-1, 1], size=2)
               * (rng.uniform(size=2) < 0.6))
    else:
        off = rng.uniform(-0.08, 0.08, size=2) * size
    c = size / 2 + off
    poly = shape_polygon(cls, c[0], c[1], d, rng.uniform(0, 2 * math.pi))

    def covered(poly):  # -> (rasterized, the pixels it covers), or None if none
        r = rasterize(poly, size, size)
        return None if r is None else (r, pixels(r, size, size))

    def draw(r):  # in a colour that stands out from what it covers
        paint(rng, img, *r, _contrast_ok(rng, img, *r, []))

    shape, full = covered(poly), polygon_area(poly)
    if shape is None:
        return None
    draw(shape[0])
    visible = shape[1]
    for _ in range(int(rng.integers(0, 3))):
        dd = rng.uniform(0.3, 0.7) * d
        a, dist = rng.uniform(0, 2 * math.pi), rng.uniform(0.45, 0.8) * (d + dd) / 2
        other = covered(shape_polygon(int(rng.integers(1, 6)), c[0] + dist * math.cos(a),
                                      c[1] + dist * math.sin(a), dd, rng.uniform(0, 2 * math.pi)))
        if other is not None and (visible & ~other[1]).sum() >= MIN_VISIBLE_FRAC * full:
            draw(other[0])
            visible &= ~other[1]
    if not visible_enough(visible.sum(), full):
        return None
    ys, xs = np.nonzero(visible)
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)
    pil = camera(rng, img)
    if rng.uniform() < 0.7:
        pil = jpeg_roundtrip(pil, int(rng.integers(75, 96)))
    return pil, cls, box


def coco_annotations(instances, image_id, first_ann_id):
    anns = []
    for k, inst in enumerate(instances):
        rle = mask_util.encode(np.asfortranarray(inst["mask"].astype(np.uint8)))
        bbox = [float(v) for v in mask_util.toBbox(rle)]
        area = float(mask_util.area(rle))
        rle["counts"] = rle["counts"].decode("ascii")
        anns.append(dict(id=first_ann_id + k, image_id=image_id, category_id=inst["category_id"],
                         segmentation=rle, area=area, bbox=bbox, iscrowd=0))
    return anns


def categories():
    return [dict(id=i + 1, name=n, supercategory="shape") for i, n in enumerate(CLASSES)]


def write_dataset(out_dir, count, seed, start=0):
    img_dir = os.path.join(out_dir, "images")
    os.makedirs(img_dir, exist_ok=True)
    images, anns = [], []
    for i in range(start, start + count):
        pil, instances, meta = make_scene(seed, i)
        png = meta["png"]
        name = f"{i:06d}.png" if png else f"{i:06d}.jpg"
        path = os.path.join(img_dir, name)
        if png:
            pil.save(path, format="PNG")
        else:
            pil.save(path, format="JPEG", quality=meta["jpeg_quality"])
        image_id = i + 1
        images.append(dict(id=image_id, file_name=f"images/{name}", width=pil.width,
                           height=pil.height))
        anns.extend(coco_annotations(instances, image_id, len(anns) + 1))
        if (i - start + 1) % 50 == 0:
            print(f"{i - start + 1}/{count}", file=sys.stderr, flush=True)
    coco = dict(info=dict(description=f"segd synthetic shapes, seed {seed}",
                          generator="tools/shapes/generate.py"),
                images=images, annotations=anns, categories=categories())
    with open(os.path.join(out_dir, "annotations.json"), "w") as f:
        json.dump(coco, f)
    return coco


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--start", type=int, default=0, help="first scene index")
    args = ap.parse_args()
    coco = write_dataset(args.out_dir, args.count, args.seed, start=args.start)
    print(f"wrote {len(coco['images'])} images, {len(coco['annotations'])} instances "
          f"to {args.out_dir}")


if __name__ == "__main__":
    main()
