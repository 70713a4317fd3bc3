"""What the peers share: timing, and reading Fashion-MNIST's IDX files as convnet does."""

import gzip
import os
import statistics
import sys
import time

import numpy as np


def median_ms(f):
    """Two warm-up runs, then at least five runs and at least a second of them (as
    `convnet bench` times)."""
    f()
    f()
    times = []
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < 1.0 and len(times) < 1000):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion_mnist_dir():
    for d in [os.environ.get("CONVNET_DATA", ""), os.path.expanduser("~/.convnet/datasets/fashion-mnist"),
              "/usr/share/datasets/fashion-mnist"]:
        if d and os.path.exists(os.path.join(d, "train-images-idx3-ubyte.gz")):
            return d
    sys.exit("Fashion-MNIST not found: apt-get install dataset-fashion-mnist")
