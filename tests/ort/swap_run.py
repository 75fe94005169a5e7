#!/usr/bin/python3
"""A twinedge-run that lies (ort_negative_indices): runs the real one
($TE_SWAP_RUN), then swaps the first two rows of output $TE_SWAP_OUTPUT's
file, so that ort_check.py must report that integer output as different
from onnxruntime's.

usage: TE_SWAP_RUN=... TE_SWAP_OUTPUT=K swap_run.py ARGS...  (as twinedge-run)
"""
import os
import subprocess
import sys

import numpy as np


def main(args):
    p = subprocess.run([os.environ["TE_SWAP_RUN"]] + args, stdout=subprocess.DEVNULL)
    if p.returncode:
        return p.returncode
    out = args[args.index("-o") + 1]
    path = out[:-4] + ".%d.npy" % int(os.environ["TE_SWAP_OUTPUT"])
    a = np.load(path)
    a[[0, 1]] = a[[1, 0]]
    np.save(path, a)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
