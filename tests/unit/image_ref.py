#!/usr/bin/python3
"""Test images for test_image: hand-written PNGs (zlib, no PIL) and the
expected model inputs, computed here independently of te_image.c (NumPy
float64; the bilinear resize is cross-checked against PyTorch when present).

usage: image_ref.py OUTDIR"""
import struct
import sys
import zlib

import numpy as np


def png(path, pixels, bit_depth=8):
    """pixels: (H, W) grey or (H, W, C) with C in 2 (grey+alpha), 3, 4."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    h, w, c = pixels.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    dt = ">u2" if bit_depth == 16 else "u1"
    rows = b"".join(b"\x00" + pixels[y].astype(dt).tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, colour_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows, 9)) +
                chunk(b"IEND", b""))


def to_channels(img, want):
    """img (H, W, C) 0..255 float -> (H, W, want): alpha dropped, BT.601 luma, grey replicated."""
    c = img.shape[2]
    colour = img[:, :, :3] if c >= 3 else np.repeat(img[:, :, :1], 3, axis=2)
    if want == 1:
        if c >= 3:
            return (0.299 * colour[:, :, 0] + 0.587 * colour[:, :, 1] + 0.114 * colour[:, :, 2])[:, :, None]
        return img[:, :, :1]
    if want == 3:
        return colour
    alpha = img[:, :, c - 1:c] if c in (2, 4) else np.full(img.shape[:2] + (1,), 255.0)
    return np.concatenate([colour, alpha], axis=2)


def coords(out_n, in_n):
    s = (np.arange(out_n) + 0.5) * (in_n / out_n) - 0.5
    s = np.maximum(s, 0.0)
    i0 = np.minimum(np.floor(s).astype(int), in_n - 1)
    i1 = np.minimum(i0 + 1, in_n - 1)
    return i0, i1, s - i0


def resize(img, h, w):
    """Bilinear, half-pixel centres, no antialiasing; img (H, W, C)."""
    y0, y1, fy = coords(h, img.shape[0])
    x0, x1, fx = coords(w, img.shape[1])
    fx = fx[None, :, None]
    top = img[y0][:, x0] + (img[y0][:, x1] - img[y0][:, x0]) * fx
    bot = img[y1][:, x0] + (img[y1][:, x1] - img[y1][:, x0]) * fx
    return top + (bot - top) * fy[:, None, None]


def expect(img, c, h, w, mean, std):
    x = resize(to_channels(img.astype(np.float64), c), h, w) / 255.0
    x = (x - np.array(mean)) / np.array(std)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def centre_crop(img, h, w):
    """The largest centred region of aspect w:h (te_image.c's TE_FIT_CROP, same integer rounding)."""
    ih, iw = img.shape[:2]
    if iw * h > ih * w:
        cw = max(1, (ih * w + h // 2) // h)
        x0 = (iw - cw) // 2
        return img[:, x0:x0 + cw]
    ch = max(1, (iw * h + w // 2) // w)
    y0 = (ih - ch) // 2
    return img[y0:y0 + ch]


def cross_check_torch(img, h, w):
    try:
        import torch
    except ImportError:
        return
    t = torch.from_numpy(img.astype(np.float64).transpose(2, 0, 1)[None])
    r = torch.nn.functional.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)
    mine = resize(img.astype(np.float64), h, w).transpose(2, 0, 1)[None]
    assert np.allclose(r.numpy(), mine, atol=1e-9), "numpy resize differs from torch"


def pattern(h, w, c, seed, hi=255):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    out = np.empty((h, w, c))
    for k in range(c):
        out[:, :, k] = 0.5 + 0.4 * np.sin(x / (3.0 + k) + k) * np.cos(y / (4.0 + k)) + rng.uniform(-0.03, 0.03, (h, w))
    return np.clip(np.rint(out * hi), 0, hi).astype(np.uint16 if hi > 255 else np.uint8)


def main():
    out = sys.argv[1]
    cases = []
    rgb = pattern(23, 37, 3, 1)
    png(f"{out}/rgb.png", rgb)
    rgb.tofile(f"{out}/rgb.raw")            # for the JPEG made by the C test
    cases.append(("rgb_3x16x20", rgb, 3, 16, 20, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))
    cases.append(("rgb_1x28x28", rgb, 1, 28, 28, [0.5], [0.25]))
    grey = pattern(7, 10, 1, 2)
    png(f"{out}/grey.png", grey[:, :, 0])
    cases.append(("grey_3x28x28", grey, 3, 28, 28, [0, 0, 0], [1, 1, 1]))
    rgba = pattern(12, 9, 4, 3)
    png(f"{out}/rgba.png", rgba)
    cases.append(("rgba_3x5x6", rgba, 3, 5, 6, [0.1, 0.2, 0.3], [0.5, 0.6, 0.7]))
    cases.append(("rgba_4x12x9", rgba, 4, 12, 9, [0, 0, 0, 0], [1, 1, 1, 1]))
    ga = pattern(6, 6, 2, 4)
    png(f"{out}/greyalpha.png", ga)
    cases.append(("greyalpha_4x3x3", ga, 4, 3, 3, [0, 0, 0, 0], [1, 1, 1, 1]))
    g16 = pattern(9, 11, 1, 5, hi=65535)
    png(f"{out}/grey16.png", g16[:, :, 0], bit_depth=16)
    cases.append(("grey16_1x9x11", (g16 >> 8).astype(np.uint8), 1, 9, 11, [0], [1]))
    # --fit crop: wide images lose their sides, tall ones their top and bottom
    cases.append(("crop_rgb_3x16x20", centre_crop(rgb, 16, 20), 3, 16, 20, [0.485, 0.456, 0.406],
                  [0.229, 0.224, 0.225]))
    cases.append(("crop_rgb_1x28x28", centre_crop(rgb, 28, 28), 1, 28, 28, [0.5], [0.25]))
    cases.append(("crop_rgba_3x5x6", centre_crop(rgba, 5, 6), 3, 5, 6, [0.1, 0.2, 0.3], [0.5, 0.6, 0.7]))
    assert centre_crop(rgba, 5, 6).shape[:2] == (8, 9) and centre_crop(rgb, 16, 20).shape[:2] == (23, 29)
    for name, img, c, h, w, mean, std in cases:
        cross_check_torch(to_channels(img.astype(np.float64), c), h, w)
        np.save(f"{out}/{name}.npy", expect(img, c, h, w, mean, std))
    # a PNG whose header claims 100000 x 100000 pixels
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    with open(f"{out}/huge.png", "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + crc +
                struct.pack(">I", 12) + b"IDAT" + zlib.compress(b"\x00" * 64)[:12] + b"\0\0\0\0")


if __name__ == "__main__":
    main()
