"""What a curious EdgeA can do with the masked inputs it records: find pairs
of requests whose masks were equal.

    tap_analyze.py SCENARIO=TAPFILE...

Each TAPFILE holds the evil plugin's tap records (evil_plugin.c: u32 magic
'TTAP', u32 layer, u32 ring_bits, u32 0, u64 batch, u64 n, n x u64 words
A = x + M mod 2^l).  For every pair of records of one scenario with the
same layer, ring width and length: if the masks were equal, A1 - A2 = x1 - x2
is small, so the pair is flagged when every element of A1 - A2, lifted to a
signed l-bit integer, is below 2^(l-8) in magnitude.  With fresh uniform
masks that happens with probability 2^(-7n) per pair (n >= 84 here); with a
repeated mask it always does (activations use about 16 bits, rings 37+).

Prints one line per scenario and a last line "flagged: N"; exit status 0.
"""
import sys
from collections import defaultdict

import numpy as np

MAGIC = 0x50415454
MARGIN_BITS = 8


def records(path):
    data = open(path, "rb").read() if path else b""
    pos = 0
    while pos < len(data):
        magic, layer, ring, _ = np.frombuffer(data, "<u4", 4, pos)
        batch, n = np.frombuffer(data, "<u8", 2, pos + 16)
        if magic != MAGIC:
            raise SystemExit(f"{path}: bad record at byte {pos}")
        words = np.frombuffer(data, "<u8", int(n), pos + 32)
        pos += 32 + 8 * int(n)
        yield int(layer), int(ring), words


def lifted_max_abs(diff, ring):
    """max |signed(diff mod 2^ring)| per row, in float64 (rounding does not
    matter against a power-of-two threshold 8 bits below the ring)."""
    if ring >= 64:
        return np.abs(diff.view(np.int64).astype(np.float64)).max(axis=1)
    v = (diff & np.uint64((1 << ring) - 1)).astype(np.float64)
    v = np.where(v >= 2.0 ** (ring - 1), v - 2.0 ** ring, v)
    return np.abs(v).max(axis=1)


def analyze(path):
    groups = defaultdict(list)
    count = 0
    for layer, ring, words in records(path):
        groups[(layer, ring, len(words))].append(words)
        count += 1
    flagged, pairs, closest = 0, 0, None  # closest: smallest log2 max|A1 - A2| - (ring - 8) seen
    for (layer, ring, n), rows in groups.items():
        a = np.stack(rows)
        for i in range(len(a) - 1):
            m = lifted_max_abs(a[i + 1:] - a[i], ring)
            pairs += len(m)
            hit = m < 2.0 ** (ring - MARGIN_BITS)
            flagged += int(hit.sum())
            honest = m[~hit]
            if len(honest):
                gap = float(np.log2(max(honest.min(), 1.0))) - (ring - MARGIN_BITS)
                closest = gap if closest is None else min(closest, gap)
    return count, pairs, flagged, closest


def main():
    total = 0
    for arg in sys.argv[1:]:
        name, _, path = arg.partition("=")
        try:
            count, pairs, flagged, closest = analyze(path)
        except FileNotFoundError:
            count, pairs, flagged, closest = 0, 0, 0, None
        total += flagged
        margin = "-" if closest is None else f"{closest:+.1f} bits"
        print(f"{name:<12} records {count:4d}  pairs compared {pairs:6d}  equal masks flagged {flagged:5d}  "
              f"closest unflagged pair vs threshold: {margin}")
    print(f"flagged: {total}")


if __name__ == "__main__":
    main()
