#!/usr/bin/env python3
"""Writes the weight-reader fixtures (deterministic values, a few KB in all).

  make_weight_fixtures.py [--out Tests/MaskRCNNTests/Fixtures/weights]

One small state dict (every dtype segd reads, 0-d and empty tensors, views with storage
offsets, transposes, steps and a zero stride that share one storage, an OrderedDict with
_metadata) saved as:

  small.pth            torch.save, zip format (torch >= 1.6)
  small_legacy.pth     torch.save(..., _use_new_zipfile_serialization=False)
  small_p4.pth         zip, pickle_protocol=4 (FRAME, MEMOIZE, STACK_GLOBAL, SHORT_BINUNICODE)
  small_legacy_p5.pth  legacy, pickle_protocol=5
  small.safetensors    safetensors.torch.save_file of contiguous copies, with __metadata__
  small_zip64.pth      small.pth's entries rewritten with zip64 records everywhere
                       (sizes and offsets only in zip64 extra fields, zip64 end record),
                       data deliberately unaligned; torch.load reads it back
  deflated.pth         small.pth's entries re-zipped with deflate (must be refused)
  evil_global.pth      a zip checkpoint whose data.pkl calls os.system (hand-written
                       pickle bytes; never unpickled here)
  expected.json        per key: shape, safetensors dtype, and the float32 bit patterns of
                       tensor.float() (bits, so that NaN, -0.0 and inf compare exactly);
                       the metadata each format must report

The expected values come from torch's own conversion (`.float()`), never from the
readers under test. Every written checkpoint is read back with torch.load.
"""
import argparse
import io
import json
import math
import os
import struct
import zipfile
import zlib
from collections import OrderedDict

import torch
from safetensors.torch import save_file

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SIZE_LIMIT = 300_000  # bytes, all fixtures written here together

SAFETENSORS_DTYPE = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


def state_dict():
    g = torch.Generator().manual_seed(0)
    sd = OrderedDict()
    sd["conv.weight"] = torch.randn(4, 3, 3, 3, generator=g)
    sd["bn.running_var"] = torch.rand(4, generator=g) + 0.5
    sd["bn.num_batches_tracked"] = torch.tensor(7)  # 0-d int64, as BatchNorm2d has
    sd["f16"] = torch.tensor([1.5, -2.0, 65504.0, 6e-8, math.inf, -0.0, math.nan, 1e-4],
                             dtype=torch.float16)  # 6e-8 is subnormal in half
    sd["bf16"] = torch.tensor([[1.0, -3.140625, 1e30], [1e-30, -0.0, 256.5]], dtype=torch.bfloat16)
    sd["f64"] = torch.tensor([1 / 3, -1e40, 2.5, 1e-50], dtype=torch.float64)  # overflow and underflow in float32
    sd["i64"] = torch.tensor([0, -5, 2**40 + 1, 2**53 + 1, -(2**63)], dtype=torch.int64)
    sd["i32"] = torch.tensor([[-(2**31), 2**31 - 1], [0, -1]], dtype=torch.int32)
    sd["i16"] = torch.tensor([-32768, 32767, 12], dtype=torch.int16)
    sd["i8"] = torch.tensor([-128, 127, 0], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 255, 128], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["empty"] = torch.zeros(0, 3)
    # Views sharing one float storage: torch.save writes the storage once and each view
    # as (offset, size, stride).
    base = torch.arange(48, dtype=torch.float32).reshape(6, 8)
    sd["view.base"] = base
    sd["view.slice"] = base[1:5, 2:7]          # offset 10, stride (8, 1)
    sd["view.t"] = base.t()                    # stride (1, 8)
    sd["view.step"] = base[::2, 1::3]          # offset 1, stride (16, 3)
    sd["view.row"] = base[4]                   # offset 32, 1-d
    sd["view.expand"] = base[2:5, 0:1].expand(3, 4)  # stride (8, 0)
    sd["i64.tail"] = sd["i64"][2:]             # offset into an int64 storage
    sd["f16.t"] = torch.randn(3, 5, generator=g).half().t()  # strided conversion of half
    sd._metadata = OrderedDict([("", {"version": 1}), ("bn", {"version": 2})])
    return sd


def bits(t):
    """float32 bit patterns of t.float(), row-major."""
    f = t.float().contiguous().reshape(-1)
    return [v & 0xFFFFFFFF for v in f.view(torch.int32).tolist()]


def write_zip64(entries, path):
    """A zip with every size and offset in zip64 fields (APPNOTE 4.5.3), entries stored,
    data not aligned. Python's zipfile writes zip64 only past 4 GiB; this exercises the
    same records at fixture size. An unknown 1-byte extra field (id 0xCAFE) precedes the
    zip64 one, so readers must walk the extra fields, and it leaves the data unaligned."""
    out = io.BytesIO()
    pad = struct.pack("<HHB", 0xCAFE, 1, 0)
    central = []
    for name, data in entries:
        n = name.encode()
        crc = zlib.crc32(data)
        offset = out.tell()
        extra = pad + struct.pack("<HHQQ", 1, 16, len(data), len(data))
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0x21, crc,
                              0xFFFFFFFF, 0xFFFFFFFF, len(n), len(extra)))
        out.write(n + extra + data)
        cextra = pad + struct.pack("<HHQQQ", 1, 24, len(data), len(data), offset)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0x21, crc,
                                   0xFFFFFFFF, 0xFFFFFFFF, len(n), len(cextra), 0, 0, 0, 0,
                                   0xFFFFFFFF) + n + cextra)
    cd_offset = out.tell()
    for c in central:
        out.write(c)
    cd_size = out.tell() - cd_offset
    z64 = out.tell()
    out.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, len(entries), len(entries),
                          cd_size, cd_offset))
    out.write(struct.pack("<IIQI", 0x07064B50, 0, z64, 1))
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
    with open(path, "wb") as f:
        f.write(out.getvalue())


def zip_entries(path):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def check_roundtrip(path, sd):
    # weights_only=False: torch's own restricted unpickler lacks FRAME (protocol >= 4), and
    # these files were just written by this script.
    loaded = torch.load(path, weights_only=False)
    assert list(loaded.keys()) == list(sd.keys()), path
    for k, v in sd.items():
        assert loaded[k].dtype == v.dtype and loaded[k].shape == v.shape, (path, k)
        assert bits(loaded[k]) == bits(v), (path, k)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(REPO, "Tests/MaskRCNNTests/Fixtures/weights"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    out = lambda name: os.path.join(args.out, name)  # noqa: E731

    sd = state_dict()
    torch.save(sd, out("small.pth"))
    torch.save(sd, out("small_legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save(sd, out("small_p4.pth"), pickle_protocol=4)
    torch.save(sd, out("small_legacy_p5.pth"), _use_new_zipfile_serialization=False, pickle_protocol=5)
    st_metadata = {"format": "pt", "note": "segd weight-reader fixture"}
    save_file(OrderedDict((k, v.contiguous().clone()) for k, v in sd.items()), out("small.safetensors"),
              metadata=st_metadata)

    entries = zip_entries(out("small.pth"))
    write_zip64(entries, out("small_zip64.pth"))
    with zipfile.ZipFile(out("small_zip64.pth")) as z:
        assert z.testzip() is None
    with zipfile.ZipFile(out("deflated.pth"), "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(name, data)

    # data.pkl of os.system("echo pwned"), written opcode by opcode (protocol 2):
    # PROTO 2, GLOBAL 'os system', BINUNICODE 'echo pwned', TUPLE1, REDUCE, STOP.
    command = b"echo pwned"
    evil = (b"\x80\x02" + b"cos\nsystem\n" + b"X" + struct.pack("<I", len(command)) + command
            + b"\x85" + b"R" + b".")
    with zipfile.ZipFile(out("evil_global.pth"), "w", zipfile.ZIP_STORED) as z:
        z.writestr("evil_global/data.pkl", evil)
        z.writestr("evil_global/byteorder", b"little")
        z.writestr("evil_global/version", b"3\n")

    for name in ["small.pth", "small_legacy.pth", "small_p4.pth", "small_legacy_p5.pth", "small_zip64.pth"]:
        check_roundtrip(out(name), sd)
    from safetensors.torch import load_file
    st = load_file(out("small.safetensors"))
    for k, v in sd.items():
        assert bits(st[k]) == bits(v), k

    expected = {
        "tensors": {k: {"shape": list(v.shape), "dtype": SAFETENSORS_DTYPE[v.dtype], "bits": bits(v)}
                    for k, v in sd.items()},
        "metadata_pth": {"_metadata//version": "1", "_metadata/bn/version": "2"},
        "metadata_safetensors": st_metadata,
        # Byte offset of the forbidden GLOBAL opcode inside data.pkl.
        "evil_global": {"global": "os.system", "pickle_offset": 2},
    }
    with open(out("expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")

    total = sum(os.path.getsize(out(n)) for n in os.listdir(args.out))
    assert total < SIZE_LIMIT, f"fixtures are {total} bytes, over {SIZE_LIMIT}"
    print(f"wrote {len(os.listdir(args.out))} files, {total} bytes, to {args.out}")


if __name__ == "__main__":
    main()
