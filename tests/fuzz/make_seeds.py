#!/usr/bin/python3
"""Seeds for fuzz_image and fuzz_service (the C make_seeds writes the others).

usage: make_seeds.py CORPUS_DIR  (tests/fuzz/corpus; reads its wire/ and bundle/ seeds;
JPEG seeds are made with Debian's libstb (cc -lstb) when a C compiler is there)"""
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "unit"))


def png(pixels, bit_depth=8, colour_type=None):
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    h, w, c = pixels.shape
    ct = {1: 0, 2: 4, 3: 2, 4: 6}[c] if colour_type is None else colour_type
    dt = ">u2" if bit_depth == 16 else "u1"
    # rows with each of the five PNG filters (the data is what filter 0 would give; any bytes decode)
    rows = b"".join(bytes([y % 5]) + pixels[y].astype(dt).tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, ct, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def jpegs(raw, w, h):
    src = r'''
#include <stdio.h>
#include <stb/stb_image_write.h>
static void put(void *f, void *d, int n) { fwrite(d, 1, (size_t)n, f); }
int main(int argc, char **argv) {
    static unsigned char px[16 * 12 * 3];
    FILE *in = fopen(argv[1], "rb");
    if (!in || fread(px, 1, sizeof px, in) != sizeof px) return 1;
    FILE *g = fopen(argv[2], "wb"), *c = fopen(argv[3], "wb");
    stbi_write_jpg_to_func(put, c, 16, 12, 3, px, 90);
    stbi_write_jpg_to_func(put, g, 16, 12, 1, px, 60);
    return fclose(g) | fclose(c);
}
'''
    with tempfile.TemporaryDirectory() as d:
        open(f"{d}/w.c", "w").write(src)
        open(f"{d}/px", "wb").write(raw)
        if subprocess.call(["cc", "-o", f"{d}/w", f"{d}/w.c", "-lstb", "-lm"]) != 0:
            return {}
        subprocess.check_call([f"{d}/w", f"{d}/px", f"{d}/g.jpg", f"{d}/c.jpg"])
        return {"grey.jpg": open(f"{d}/g.jpg", "rb").read(), "rgb.jpg": open(f"{d}/c.jpg", "rb").read()}


def main():
    corpus = sys.argv[1]
    rng = np.random.default_rng(7)
    img = os.path.join(corpus, "image")
    os.makedirs(img, exist_ok=True)
    rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    seeds = {
        "rgb.png": png(rgb),
        "grey.png": png(rgb[:, :, 0]),
        "greyalpha.png": png(rgb[:, :, :2]),
        "rgba.png": png(np.concatenate([rgb, rgb[:, :, :1]], axis=2)),
        "grey16.png": png(rgb[:, :, 0].astype(np.uint16) * 257, bit_depth=16),
    }
    seeds.update(jpegs(rgb.tobytes(), 16, 12))
    for sel, (name, data) in enumerate(sorted(seeds.items())):
        open(os.path.join(img, name), "wb").write(bytes([(sel * 37) & 0xff]) + data)

    svc = os.path.join(corpus, "service")
    os.makedirs(svc, exist_ok=True)
    wire = os.path.join(corpus, "wire")
    # method index: 0 Infer, 1 MaskShare, 2 Deploy, 3 RegisterDevice, 4 Stats, 5 Health
    for f in sorted(os.listdir(wire)):
        if not f.startswith("req-"):
            continue
        body = open(os.path.join(wire, f), "rb").read()[1:]
        to = int(f[-1])  # 0: device -> A, 1: device -> B, 2: EdgeA -> B
        method, host = (1, 1) if to == 2 else (0, to)
        open(os.path.join(svc, f"{'mask' if method else 'infer'}-{f[4:]}"), "wb").write(bytes([method, host]) + body)
    bundle = open(os.path.join(corpus, "bundle", "edge.bundle"), "rb").read()[1:]
    chunks = b""
    for i in range(0, len(bundle), 300):
        part = bundle[i:i + 300]
        msg = b"\x0a" + bytes([len(part) & 0x7f | 0x80, len(part) >> 7]) if len(part) >= 128 else b"\x0a" + bytes([len(part)])
        msg += part
        chunks += struct.pack(">H", len(msg)) + msg
    for host in (0, 1):
        open(os.path.join(svc, f"deploy-{host}"), "wb").write(bytes([2, host]) + chunks)
    dev, dep = b"fuzz-device", b"0123456789abcdef0123456789abcdef"
    key = bytes((i * 7 + 1) & 0xff for i in range(32))
    km = b"\x0a" + bytes([len(dev)]) + dev + b"\x12" + bytes([len(dep)]) + dep + b"\x1a\x20" + key
    open(os.path.join(svc, "register"), "wb").write(bytes([3, 1]) + km)
    open(os.path.join(svc, "stats"), "wb").write(bytes([4, 0]))
    svcname = b"twinedge.EdgeHost"
    open(os.path.join(svc, "health"), "wb").write(bytes([5, 1]) + b"\x0a" + bytes([len(svcname)]) + svcname)


main()
