"""The comparison workloads W1-W6 in PyTorch (channels_last, f32, the same thread count
as convnet), printed as JSON lines like `convnet bench --workload ... --json`.

    python bench/peers/torch_bench.py W2 [--threads 2] [--json results.jsonl]

Run through bench/compare.py, which alternates it with convnet and Keras."""

import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import torch

from common import fashion_mnist_dir, median_ms, read_idx
import torch.nn as nn
import torch.nn.functional as F


def cl(x):
    return x.contiguous(memory_format=torch.channels_last)


def layer(name, shape, module):
    """Forward (inference) and forward+backward (input and weight gradients)."""
    n, h, w, c = shape
    module = module.to(memory_format=torch.channels_last)
    x = cl(torch.rand(n, c, h, w))
    with torch.no_grad():
        forward = median_ms(lambda: module(x))
        dy = module(x)
    xg = x.clone().requires_grad_(True)

    def both():
        module.zero_grad(set_to_none=False)
        xg.grad = None
        module(xg).backward(dy)

    return [(f"{name} forward", forward), (f"{name} forward+backward", median_ms(both))]


class FmnistCnn(nn.Module):
    """The reference CNN, as zoo::fmnist_cnn builds it."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.drop = nn.Dropout(0.5)
        self.dense = nn.Linear(64 * 5 * 5, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        # Flatten in NHWC order, as Keras does.
        x = x.permute(0, 2, 3, 1).flatten(1)
        return self.dense(self.drop(x))


def w1():
    start = time.perf_counter()
    d = fashion_mnist_dir()
    x = torch.from_numpy(read_idx(os.path.join(d, "train-images-idx3-ubyte.gz")).astype(np.float32) / 255.0)
    y = torch.from_numpy(read_idx(os.path.join(d, "train-labels-idx1-ubyte.gz")).astype(np.int64))
    x = cl(x.unsqueeze(1))
    torch.manual_seed(1)
    model = FmnistCnn().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    model.train()
    order = torch.randperm(len(x))
    for i in range(0, len(x), 128):
        idx = order[i:i + 128]
        opt.zero_grad()
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
    return [("W1 fmnist_cnn epoch", (time.perf_counter() - start) * 1e3)]


class Inception(nn.Module):
    def __init__(self):
        super().__init__()
        self.b = nn.ModuleList([nn.Conv2d(3, 64, k, padding=k // 2) for k in (1, 3, 5)])

    def forward(self, x):
        return torch.cat([F.relu(b(x)) for b in self.b], dim=1)


class MobileNetBlock(nn.Module):
    """zoo::mobilenet_block_sized(224): TF 'same' padding of the stride-2 layers
    (pad bottom/right) is written out with F.pad."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, stride=2, bias=False)
        self.bn1 = nn.BatchNorm2d(16, eps=1e-3)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.bn2 = nn.BatchNorm2d(16, eps=1e-3)
        self.pw = nn.Conv2d(16, 24, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(24, eps=1e-3)
        self.sep_dw = nn.Conv2d(24, 24, 3, stride=2, groups=24, bias=False)
        self.sep_pw = nn.Conv2d(24, 32, 1)
        self.dense = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu6(self.bn1(self.conv(F.pad(x, (0, 1, 0, 1)))))
        x = F.relu(self.bn2(self.dw(x)))
        x = self.bn3(self.pw(x))
        x = F.relu(self.sep_pw(self.sep_dw(F.pad(x, (0, 1, 0, 1)))))
        x = x.mean(dim=(2, 3))
        return F.softmax(self.dense(x), dim=1)


def inference(name, module, shape):
    module = module.eval().to(memory_format=torch.channels_last)
    n, h, w, c = shape
    x = cl(torch.rand(n, c, h, w))
    with torch.no_grad():
        return [(name, median_ms(lambda: module(x)))]


WORKLOADS = {
    "W1": w1,
    "W2": lambda: layer("W2 conv3x3 64->64 56x56 b8", (8, 56, 56, 64), nn.Conv2d(64, 64, 3, padding=1)),
    "W3": lambda: layer("W3 conv1x1 64->256 56x56 b8", (8, 56, 56, 64), nn.Conv2d(64, 256, 1)),
    "W4": lambda: layer("W4 depthwise3x3 32ch 112x112 b8", (8, 112, 112, 32), nn.Conv2d(32, 32, 3, padding=1, groups=32)),
    "W5": lambda: inference("W5 seed inception 224x224x3 b4 inference", Inception(), (4, 224, 224, 3)),
    "W6": lambda: inference("W6 mobilenet block 224x224x3 b1 latency", MobileNetBlock(), (1, 224, 224, 3)),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("workload", choices=sorted(WORKLOADS))
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    results = WORKLOADS[a.workload]()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = []
    for name, ms in results:
        print(f"{name:<48} {ms:>10.2f} ms")
        lines.append(json.dumps({"engine": "pytorch", "version": torch.__version__, "name": name, "ms": ms,
                                 "threads": a.threads, "peak_mb": peak_mb}))
    print(f"peak memory: {peak_mb:.0f} MiB")
    if a.json:
        with open(a.json, "a") as f:
            f.write("".join(l + "\n" for l in lines))


if __name__ == "__main__":
    main()
