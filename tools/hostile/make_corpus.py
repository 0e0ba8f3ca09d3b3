#!/usr/bin/env python3
"""Writes segd's hostile-input corpus into a folder: python3 make_corpus.py OUTDIR [--outside DIR]

Deterministic (fixed images, fixed offsets, a seeded PRNG): the same files every run.
Needs Pillow for the base images (and pillow-heif for the HEIC ones; without it they are
left out); everything hostile is made by byte surgery on them.
Not committed output: generate it where a test or a person needs it. The XCTest
suite (Tests/PipelineTests/HostileInputTests.swift) builds the same kinds of files in
Swift, so CI needs no Python; this script is the fuller set for manual runs and soaks.

Layout of OUTDIR:
  files/     regular files with image extensions (truncated, patched, bombs, ...)
  special/   FIFOs, sockets, directories named *.jpg, symlinks (to /dev/zero, outside
             the tree, to themselves), awkward names (newline, invalid UTF-8, leading
             dash, 255 bytes)
  MANIFEST.tsv  one line per entry: relative path (as escaped bytes), kind, expectation
"""
import io
import os
import random
import socket
import struct
import sys
import zlib

from PIL import Image

MANIFEST = []


def note(rel, kind, expect):
    MANIFEST.append((rel, kind, expect))


def pattern(w, h, mode="RGB"):
    im = Image.new("RGB", (w, h))
    im.putdata([((x * 37) % 256, (y * 59) % 256, ((x + y) * 23) % 256) for y in range(h) for x in range(w)])
    # a bright block: something object-like for the model
    for y in range(h // 4, h // 2):
        for x in range(w // 4, w // 2):
            im.putpixel((x, y), (250, 250, 250))
    return im.convert(mode)


def encode(im, fmt, **kw):
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def exif(orientation):
    e = Image.Exif()
    e[0x0112] = orientation
    return e.tobytes()


# ---------- JPEG surgery ----------

def jpeg_segments(data):
    """(marker, offset of FF, end offset) for every segment before the first SOS, and the SOS."""
    out, i = [], 2
    while i + 4 <= len(data):
        while i < len(data) and data[i] == 0xFF:
            i += 1
        marker = data[i]
        start = i - 1
        length = struct.unpack(">H", data[i + 1:i + 3])[0]
        out.append((marker, start, i + 1 + length))
        if marker == 0xDA:
            break
        i = i + 1 + length
    return out


def sof_offset(data):
    for marker, start, _ in jpeg_segments(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return start
    raise ValueError("no SOF")


def patch_sof_dims(data, w, h):
    o = sof_offset(data)
    b = bytearray(data)
    b[o + 5:o + 7] = struct.pack(">H", h)
    b[o + 7:o + 9] = struct.pack(">H", w)
    return bytes(b)


def patch_sof_precision(data, bits):
    b = bytearray(data)
    b[sof_offset(data) + 4] = bits
    return bytes(b)


def scans(data):
    """Byte ranges [start, end) of each SOS segment plus its entropy-coded data."""
    res, i, n = [], 2, len(data)
    while i < n - 1:
        if data[i] != 0xFF or data[i + 1] in (0x00, 0xFF) or 0xD0 <= data[i + 1] <= 0xD7:
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xD9:
            break
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        end = i + 2 + length
        if marker == 0xDA:
            j = end
            while j < n - 1 and not (data[j] == 0xFF and data[j + 1] not in (0x00,) and not 0xD0 <= data[j + 1] <= 0xD7):
                j += 1
            res.append((i, j))
            i = j
        else:
            i = end
    return res


def many_scans(data, count):
    """A progressive JPEG whose last scan is repeated `count` times before EOI."""
    s = scans(data)
    last = data[s[-1][0]:s[-1][1]]
    return data[:s[-1][1]] + last * count + b"\xff\xd9"


def set_adobe_transform(data, transform):
    b = bytearray(data)
    for marker, start, end in jpeg_segments(data):
        if marker == 0xEE and b[start + 4:start + 9] == b"Adobe":
            b[start + 15] = transform
            return bytes(b)
    raise ValueError("no APP14")


# ---------- PNG surgery ----------

def png_chunk(kind, payload, crc=None):
    c = zlib.crc32(kind + payload) & 0xFFFFFFFF if crc is None else crc
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", c)


PNG_SIG = b"\x89PNG\r\n\x1a\n"


def png_chunks(data):
    i, out = 8, []
    while i + 8 <= len(data):
        n = struct.unpack(">I", data[i:i + 4])[0]
        out.append((data[i + 4:i + 8], i, i + 12 + n))
        i += 12 + n
    return out


def patch_ihdr(data, w, h, fix_crc=True):
    b = bytearray(data)
    b[16:20] = struct.pack(">I", w)
    b[20:24] = struct.pack(">I", h)
    if fix_crc:
        b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])) & 0xFFFFFFFF)
    return bytes(b)


def flip_crc(data, kind):
    b = bytearray(data)
    for k, start, end in png_chunks(data):
        if k == kind:
            b[end - 1] ^= 0xFF
            return bytes(b)
    raise ValueError(kind)


def png_raw(w, h, idat_payload, color_type=2, depth=8):
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)
    return PNG_SIG + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat_payload) + png_chunk(b"IEND", b"")


def zlib_zeros(n):
    c = zlib.compressobj(9)
    chunk = b"\0" * (1 << 20)
    out = []
    while n > 0:
        k = min(n, len(chunk))
        out.append(c.compress(chunk[:k]))
        n -= k
    out.append(c.flush())
    return b"".join(out)


# ---------- corpus ----------

def main(outdir, outside=None):
    files = os.path.join(outdir, "files")
    special = os.path.join(outdir, "special")
    os.makedirs(files, exist_ok=True)
    os.makedirs(special, exist_ok=True)
    rng = random.Random(7)

    def put(name, data, expect):
        with open(os.path.join(files, name), "wb") as f:
            f.write(data)
        note("files/" + name, "file", expect)

    base = pattern(64, 48)
    jpg = encode(base, "JPEG", quality=85)
    prog = encode(base, "JPEG", quality=85, progressive=True)
    png = encode(base, "PNG")
    put("good.jpg", jpg, "ok")
    put("good_progressive.jpg", prog, "ok")
    put("good.png", png, "ok")
    put("gray.jpg", encode(base.convert("L"), "JPEG"), "ok")
    put("rgb16.png", encode(base.convert("L").convert("I;16"), "PNG"), "ok")
    put("palette.png", encode(base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG"), "ok")
    put("rgba.png", encode(base.convert("RGBA"), "PNG"), "ok")

    # truncations at many offsets
    for src, name in ((jpg, "jpg"), (prog, "prog.jpg"), (png, "png")):
        offsets = sorted(set([1, 2, 3, 4, 7, 8, 9, 16, 20, 33, 64, 100] + [len(src) * k // 20 for k in range(1, 20)] + [len(src) - 2, len(src) - 1]))
        for off in offsets:
            if 0 < off < len(src):
                put(f"trunc_{off:05d}.{name}", src[:off], "fail")

    # flipped bytes: header region and scan data
    scan_start = jpeg_segments(jpg)[-1][2]  # first entropy-coded byte
    for k in range(40):
        b = bytearray(jpg)
        pos = rng.randrange(2, min(scan_start, len(jpg)))
        b[pos] ^= 1 << rng.randrange(8)
        put(f"flip_hdr_{k:02d}.jpg", bytes(b), "ok-or-fail")
        b = bytearray(jpg)
        pos = rng.randrange(scan_start + 1, len(jpg) - 2)
        b[pos] ^= 0xFF
        put(f"flip_scan_{k:02d}.jpg", bytes(b), "ok-or-fail")
        b = bytearray(png)
        pos = rng.randrange(8, len(png))
        b[pos] ^= 1 << rng.randrange(8)
        put(f"flip_{k:02d}.png", bytes(b), "ok-or-fail")

    # dimension patches
    for w, h in ((0, 0), (1, 65535), (65535, 65535), (65535, 1), (0, 48), (64, 0)):
        put(f"sof_{w}x{h}.jpg", patch_sof_dims(jpg, w, h), "fail")
        put(f"ihdr_{w}x{h}.png", patch_ihdr(png, w, h), "fail")
    put("ihdr_2147483647x1.png", patch_ihdr(png, 0x7FFFFFFF, 1), "fail")
    put("ihdr_4294967295x4294967295.png", patch_ihdr(png, 0xFFFFFFFF, 0xFFFFFFFF), "fail")

    # progressive with thousands of scans
    put("progressive_3000_scans.jpg", many_scans(prog, 3000), "fail")
    put("progressive_20000_scans.jpg", many_scans(prog, 20000), "fail")

    # 12-bit, CMYK, YCCK
    put("precision12.jpg", patch_sof_precision(jpg, 12), "fail")
    put("precision16.jpg", patch_sof_precision(jpg, 16), "fail")
    cmyk = encode(base.convert("CMYK"), "JPEG", quality=90)
    put("cmyk.jpg", cmyk, "ok")
    put("ycck.jpg", set_adobe_transform(cmyk, 2), "ok-or-fail")

    # EXIF orientations
    for o in range(1, 9):
        put(f"exif_orientation_{o}.jpg", encode(base, "JPEG", quality=85, exif=exif(o)), "ok")
    put("exif_orientation_0.jpg", encode(base, "JPEG", exif=exif(0)), "ok")
    put("exif_orientation_99.jpg", encode(base, "JPEG", exif=exif(99)), "ok")

    # PNG: bad CRCs, oversized chunks, zlib bombs
    put("bad_crc_ihdr.png", flip_crc(png, b"IHDR"), "fail")
    put("bad_crc_idat.png", flip_crc(png, b"IDAT"), "fail")
    put("bad_crc_iend.png", flip_crc(png, b"IEND"), "ok-or-fail")
    ihdr_end = png_chunks(png)[0][2]
    put("oversized_chunk.png", png[:ihdr_end] + struct.pack(">I", 0x7FFFFFF0) + b"tEXt" + b"A" * 64 + png[ihdr_end:], "fail")
    put("oversized_idat_len.png", png[:ihdr_end] + struct.pack(">I", 0xFFFFFFFF) + b"IDAT" + b"\0" * 64, "fail")
    bomb = zlib_zeros(256 << 20)  # 256 MB of zeros in ~256 KB
    put("ztxt_bomb.png", png[:ihdr_end] + png_chunk(b"zTXt", b"Comment\0\0" + bomb) + png[ihdr_end:], "fail-or-ok")
    put("iccp_bomb.png", png[:ihdr_end] + png_chunk(b"iCCP", b"icc\0\0" + bomb) + png[ihdr_end:], "fail-or-ok")
    # IDAT bomb: 20000x20000 RGB (400 MP, over the pixel limit) from a few hundred KB
    put("idat_bomb_400mp.png", png_raw(20000, 20000, zlib_zeros(20000 * 60001)[:1 << 20]), "fail")
    # IDAT that inflates past what IHDR declares
    put("idat_overflow.png", png_raw(4, 4, zlib.compress(b"\0" * (1 << 20))), "fail")

    # empty, text, binary
    put("empty.jpg", b"", "fail")
    put("empty.png", b"", "fail")
    put("text.jpg", b"this is not an image\n" * 10, "fail")
    put("text.png", b"#!/bin/sh\necho pwned\n", "fail")
    put("random.jpg", bytes(rng.randrange(256) for _ in range(4096)), "fail")
    put("random.png", bytes(rng.randrange(256) for _ in range(4096)), "fail")
    put("soi_only.jpg", b"\xff\xd8\xff", "fail")
    put("sig_only.png", PNG_SIG, "fail")
    put("png_named.jpg", png, "ok")
    put("jpeg_named.png", jpg, "ok")

    # WebP, TIFF, HEIC, AVIF (issue 20)
    formats = {"webp": encode(base, "WEBP", lossless=True), "webp_lossy": encode(base, "WEBP", quality=80),
               "tif": encode(base, "TIFF", compression="tiff_lzw"), "avif": encode(base, "AVIF", quality=80)}
    try:
        import pillow_heif
        pillow_heif.register_heif_opener()
        formats["heic"] = encode(base, "HEIF", quality=80)
    except ImportError:
        print("pillow-heif not installed: no HEIC entries", file=sys.stderr)
    pages = [pattern(64, 48), pattern(32, 32), pattern(16, 64)]
    formats["pages.tif"] = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:], compression="tiff_lzw")
    for key, data in formats.items():
        name = key if "." in key else f"good.{key.replace('_lossy', '')}" if "_" not in key else f"good_lossy.{key.split('_')[0]}"
        ext = name.rsplit(".", 1)[1]
        stem = name.rsplit(".", 1)[0].replace(".", "_") + "_" + ext
        put(name if key in ("webp", "tif", "avif", "heic") else f"{stem}.{ext}", data, "ok")
        for off in sorted({1, 4, 12, 16, 64, len(data) // 3, len(data) // 2, len(data) - 8}):
            put(f"trunc_{off:05d}_{stem}.{ext}", data[:off], "fail")
        put(f"empty_{stem}.{ext}", b"", "fail")
        put(f"text_{stem}.{ext}", b"this is not an image either\n", "fail")
        for k in range(6):
            b = bytearray(data)
            b[16 + rng.randrange(len(b) - 16)] ^= 1 << rng.randrange(8)
            put(f"flip_{k:02d}_{stem}.{ext}", bytes(b), "ok-or-fail")
    tif, pages_tif = formats["tif"], formats["pages.tif"]
    # A TIFF header claiming 100000x100000 (one 3-byte strip), 150 pages, a page loop.
    def tiff_pages(w, h, n):
        out = bytearray(b"II*\0" + struct.pack("<I", 12) + b"\xc8\x64\x32\0")
        for i in range(n):
            tags = [(256, 4, w), (257, 4, h), (258, 3, 8), (259, 3, 1), (262, 3, 2), (273, 4, 8),
                    (277, 3, 3), (278, 4, h), (279, 4, 3), (284, 3, 1)]
            out += struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", t, ty, 1, v) for t, ty, v in tags)
            out += struct.pack("<I", 0 if i == n - 1 else len(out) + 4)
        return bytes(out)
    put("tiff_100000x100000.tif", tiff_pages(100000, 100000, 1), "fail")
    put("tiff_150_pages.tif", tiff_pages(1, 1, 150), "fail")
    put("tiff_1000_pages.tif", tiff_pages(1, 1, 1000), "fail")
    dirs, at = [], struct.unpack_from("<I", pages_tif, 4)[0]
    while at:
        dirs.append(at)
        at = struct.unpack_from("<I", pages_tif, at + 2 + 12 * struct.unpack_from("<H", pages_tif, at)[0])[0]
    loop = bytearray(pages_tif)
    struct.pack_into("<I", loop, dirs[-1] + 2 + 12 * struct.unpack_from("<H", loop, dirs[-1])[0], dirs[0])
    put("tiff_page_loop.tif", bytes(loop), "fail")
    # The LZW strip of page 1 garbled (strips start at offset 8 in Pillow's files).
    put("tiff_corrupt_strip.tif", pages_tif[:8] + bytes(rng.randrange(256) for _ in range(64)) + pages_tif[72:], "ok-or-fail")
    # WebP: VP8X canvases over the limit (100000x100000 is over libwebp's own 2^32 too).
    webp = formats["webp"]
    for w, h, anim in [(100000, 100000, False), (16384, 16384, False), (60000, 60000, True)]:
        body = b"WEBP" + b"VP8X" + struct.pack("<I", 10) + bytes([2 if anim else 0, 0, 0, 0])
        body += struct.pack("<I", w - 1)[:3] + struct.pack("<I", h - 1)[:3] + webp[12:]
        put(f"webp_vp8x_{w}x{h}{'_anim' if anim else ''}.webp", b"RIFF" + struct.pack("<I", len(body)) + body, "fail")
    # HEIC/AVIF: every ispe set to 100000x100000.
    for ext in ("heic", "avif"):
        if ext in formats:
            b = bytearray(formats[ext])
            i = b.find(b"ispe")
            while i >= 0:
                struct.pack_into(">II", b, i + 8, 100000, 100000)
                i = b.find(b"ispe", i + 4)
            put(f"{ext}_100000x100000.{ext}", bytes(b), "fail")
    # Wrong magic under a right extension, right magic under a wrong one.
    put("wave.webp", b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + b"\0" * 28, "fail")
    put("mp4.heic", struct.pack(">I", 24) + b"ftypisom\0\0\2\0isommp41" + b"\0" * 64, "fail")
    put("mp4.avif", struct.pack(">I", 24) + b"ftypisom\0\0\2\0isommp41" + b"\0" * 64, "fail")
    put("webp_named.jpg", webp, "ok")
    put("tiff_named.png", tif, "ok")
    put("avif_named.heic", formats["avif"], "ok")
    if "heic" in formats:
        put("heic_named.tif", formats["heic"], "ok")

    # special files
    def sp(name):
        return os.path.join(special, name)

    os.mkfifo(sp("fifo.jpg"))
    note("special/fifo.jpg", "fifo", "skip-or-fail")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sp("socket.jpg"))
    s.close()
    note("special/socket.jpg", "socket", "skip-or-fail")
    os.makedirs(sp("directory.jpg"), exist_ok=True)
    note("special/directory.jpg", "dir", "skip-or-fail")
    os.symlink("/dev/zero", sp("devzero.jpg"))
    note("special/devzero.jpg", "symlink", "skip-or-fail")
    os.symlink("loop.jpg", sp("loop.jpg"))
    note("special/loop.jpg", "symlink", "skip-or-fail")
    os.symlink("dangling-target.jpg", sp("dangling.jpg"))
    note("special/dangling.jpg", "symlink", "skip-or-fail")
    if outside:
        os.makedirs(outside, exist_ok=True)
        target = os.path.join(outside, "outside.jpg")
        with open(target, "wb") as f:
            f.write(jpg)
        os.symlink(os.path.abspath(target), sp("outside.jpg"))
        note("special/outside.jpg", "symlink", "skip-or-ok")

    # awkward names (bytes paths so invalid UTF-8 survives)
    sb = os.fsencode(special)
    names = [b"new\nline.jpg", b"-leading-dash.jpg", b"--help.jpg", b"invalid-\xff\xfe-utf8.jpg",
             b"latin1-caf\xe9.jpg", b"tab\tand\rcr.jpg", b"quote'\"$(id).jpg", b"..jpg",
             b"x" * 251 + b".jpg", "日本語-ünïcödé.jpg".encode()]
    for i, n in enumerate(names):
        with open(sb + b"/" + n, "wb") as f:
            f.write(encode(pattern(32 + i, 24), "JPEG"))
        note("special/" + n.decode("utf-8", "backslashreplace"), "name", "ok-or-skip")
    assert len(names[8]) == 255

    with open(os.path.join(outdir, "MANIFEST.tsv"), "w", encoding="utf-8") as f:
        for rel, kind, expect in MANIFEST:
            f.write(f"{rel!r}\t{kind}\t{expect}\n")
    print(f"{len(MANIFEST)} entries in {outdir}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        sys.exit(__doc__)
    outside = None
    if "--outside" in args:
        i = args.index("--outside")
        outside = args[i + 1]
        del args[i:i + 2]
    main(args[0], outside)
