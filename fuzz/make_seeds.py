#!/usr/bin/env python3
"""Writes small, varied JPEG and PNG seeds for the fuzz harnesses into fuzz/seeds/.

Deterministic (fixed pattern, no randomness), Pillow only. The seeds cover the decoder
features a mutation is unlikely to invent: progressive and restart-marker JPEGs, each
chroma subsampling, grey, CMYK (Adobe), EXIF; PNG bit depths 1-16, palette with tRNS,
grey+alpha, RGBA, Adam7 interlacing, eXIf. Run: python3 fuzz/make_seeds.py
"""
import io
import os
import sys

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def pattern(w, h, mode="RGB"):
    im = Image.new("RGB", (w, h))
    im.putdata([((x * 37) % 256, (y * 59) % 256, ((x + y) * 23) % 256) for y in range(h) for x in range(w)])
    return im.convert(mode)


def exif(orientation):
    e = Image.Exif()
    e[0x0112] = orientation
    return e.tobytes()


def main(out=os.path.join(HERE, "seeds")):
    jdir, pdir = os.path.join(out, "jpeg"), os.path.join(out, "png")
    os.makedirs(jdir, exist_ok=True)
    os.makedirs(pdir, exist_ok=True)

    def save(d, name, im, **kw):
        buf = io.BytesIO()
        im.save(buf, **kw)
        with open(os.path.join(d, "gen_" + name), "wb") as f:
            f.write(buf.getvalue())

    rgb = pattern(19, 13)
    save(jdir, "s444.jpg", rgb, format="JPEG", quality=80, subsampling=0)
    save(jdir, "s422.jpg", rgb, format="JPEG", quality=80, subsampling=1)
    save(jdir, "s420.jpg", rgb, format="JPEG", quality=80, subsampling=2)
    save(jdir, "progressive.jpg", rgb, format="JPEG", quality=70, progressive=True)
    save(jdir, "optimized.jpg", rgb, format="JPEG", quality=70, optimize=True)
    save(jdir, "restart.jpg", pattern(40, 24), format="JPEG", quality=60, restart_marker_rows=1)
    save(jdir, "gray.jpg", pattern(17, 9, "L"), format="JPEG", quality=75)
    save(jdir, "cmyk.jpg", pattern(11, 7, "CMYK"), format="JPEG", quality=75)
    save(jdir, "exif6.jpg", rgb, format="JPEG", quality=50, exif=exif(6))
    save(jdir, "exif8_progressive.jpg", rgb, format="JPEG", quality=50, exif=exif(8), progressive=True)

    save(pdir, "rgb.png", rgb, format="PNG")
    save(pdir, "rgba.png", pattern(9, 7, "RGBA"), format="PNG")
    save(pdir, "la.png", pattern(9, 7, "LA"), format="PNG")
    save(pdir, "l.png", pattern(9, 7, "L"), format="PNG")
    save(pdir, "bw1.png", pattern(13, 5, "1"), format="PNG")
    save(pdir, "i16.png", pattern(9, 7, "L").convert("I;16"), format="PNG")
    pal = pattern(12, 6).convert("P", palette=Image.Palette.ADAPTIVE, colors=7)
    save(pdir, "palette_trns.png", pal, format="PNG", transparency=2)
    save(pdir, "palette4.png", pattern(12, 6).convert("P", palette=Image.Palette.ADAPTIVE, colors=4), format="PNG", bits=2)
    save(pdir, "exif3.png", rgb, format="PNG", exif=exif(3))
    print("seeds in", out)


if __name__ == "__main__":
    main(*sys.argv[1:])
