#!/usr/bin/env python3
"""Write the sample images in samples/ (deterministic: scenes of seed 2026, a seed used
neither for training (0) nor for evaluation (1000)).

    python tools/shapes/make_samples.py samples

Twelve images, various sizes: JPEG (quality 90) and PNG, one grayscale PNG (8-bit, one
channel), one JPEG whose pixels are stored rotated with EXIF Orientation = 6 ("rotate
90° clockwise to display"), so that a reader that applies the orientation sees the
upright scene and one that ignores it sees it on its side.
"""
import argparse
import os
import sys

from PIL import Image, ImageOps

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate  # noqa: E402

SEED = 2026
# (scene index, file name, how to write it)
SAMPLES = [
    (0, "shapes_01.jpg", "jpeg"),
    (1, "shapes_02.jpg", "jpeg"),
    (2, "shapes_03.jpg", "jpeg"),
    (3, "shapes_04.jpg", "jpeg"),
    (4, "shapes_05.jpg", "jpeg"),
    (5, "shapes_06.jpg", "jpeg"),
    (6, "shapes_07.jpg", "jpeg"),
    (7, "shapes_08.png", "png"),
    (8, "shapes_09.png", "png"),
    (9, "shapes_10.png", "png"),
    (10, "shapes_gray.png", "gray-png"),
    (11, "shapes_exif6.jpg", "jpeg-exif6"),
]
ORIENTATION = 0x0112


def write(pil, path, how):
    if how == "jpeg":
        pil.save(path, format="JPEG", quality=90)
    elif how == "png":
        pil.save(path, format="PNG", optimize=True)
    elif how == "gray-png":
        pil.convert("L").save(path, format="PNG", optimize=True)
    elif how == "jpeg-exif6":
        # Orientation 6: the stored image must be turned 90° clockwise for display, so
        # store the upright scene turned 90° counter-clockwise.
        stored = pil.transpose(Image.Transpose.ROTATE_90)
        exif = Image.Exif()
        exif[ORIENTATION] = 6
        stored.save(path, format="JPEG", quality=90, exif=exif.tobytes())
        check = Image.open(path)
        assert check.getexif().get(ORIENTATION) == 6
        assert ImageOps.exif_transpose(check).size == pil.size
    else:
        raise ValueError(how)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", nargs="?", default="samples")
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    for index, name, how in SAMPLES:
        pil, instances, _ = generate.make_scene(SEED, index)
        path = os.path.join(args.out_dir, name)
        write(pil, path, how)
        print(f"{path}: {pil.width}x{pil.height} {how}, {len(instances)} shapes "
              f"({', '.join(generate.CLASSES[i['category_id'] - 1] for i in instances)}), "
              f"{os.path.getsize(path) // 1024} KiB")


if __name__ == "__main__":
    main()
