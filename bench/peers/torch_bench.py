"""The comparison workloads in PyTorch, eager, in one memory format, or in ONNX Runtime
on the same modules exported by `torch.onnx.export`; printed as JSON lines like
`convnet bench --workload ... --json`.

    python bench/peers/torch_bench.py W2 --config channels_last [--threads 2] [--json results.jsonl]
    python bench/peers/torch_bench.py export DIR      # torchvision's W7-W9 networks as ONNX

--config: `contiguous` (PyTorch's default layout), `channels_last`, or `ort` (ONNX Runtime
with all its graph optimizations, for the inference workloads). Inference runs under
`torch.inference_mode`. W7-W9 are torchvision's networks (weights=None); ONNX Runtime and
convnet run the files `export` writes for them (dynamo exporter, a dynamic batch axis).
Run through bench/compare.py, which alternates it with convnet and Keras."""

import argparse
import json
import os
import resource
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common import fashion_mnist_dir, median_ms, read_idx

NETWORKS = {"W7": "resnet50", "W8": "mobilenet_v2", "W9": "efficientnet_b0"}


class Engine:
    """Runs modules in one configuration: a memory format, or ONNX Runtime."""

    def __init__(self, config, threads):
        self.config, self.threads = config, threads

    def module(self, m):
        return m.to(memory_format=torch.channels_last) if self.config == "channels_last" else m

    def tensor(self, x):
        return x.contiguous(memory_format=torch.channels_last) if self.config == "channels_last" else x

    def inference_ms(self, module, x, onnx=None):
        """A warm call's median on `x` (NCHW), in this configuration."""
        module = module.eval()
        if self.config == "ort":
            return ort_ms(module, x, self.threads, onnx)
        module, x = self.module(module), self.tensor(x)
        with torch.inference_mode():
            return median_ms(lambda: module(x))


def ort_session(path, threads):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def ort_ms(module, x, threads, onnx=None):
    """ONNX Runtime on `onnx`, or on `module` exported to a temporary file."""
    with tempfile.TemporaryDirectory() as tmp:
        if onnx is None:
            onnx = os.path.join(tmp, "module.onnx")
            torch.onnx.export(module, (x,), onnx, dynamo=False, input_names=["x"])
        session = ort_session(onnx, threads)
        name = session.get_inputs()[0].name
        feed = {name: x.numpy()}
        return median_ms(lambda: session.run(None, feed))


def layer(engine, name, shape, module):
    """Forward (inference) and forward+backward (input and weight gradients)."""
    n, h, w, c = shape
    x = torch.rand(n, c, h, w)
    rows = [(f"{name} forward", engine.inference_ms(module, x))]
    if engine.config == "ort":
        return rows
    module, x = engine.module(module.train()), engine.tensor(x)
    with torch.no_grad():
        dy = module(x)
    xg = x.clone().requires_grad_(True)

    def both():
        module.zero_grad(set_to_none=False)
        xg.grad = None
        module(xg).backward(dy)

    return rows + [(f"{name} forward+backward", median_ms(both))]


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


def fmnist_deep():
    """zoo::fmnist_deep: (Conv → BN → ReLU) x2 → MaxPool → Dropout, of 32 then 64
    filters; Dense 256 → BN → ReLU → Dropout → Dense 10 (softmax in the loss)."""
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout, eps=1e-3), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout, eps=1e-3), nn.ReLU(),
                nn.MaxPool2d(2), nn.Dropout(0.25)]
    return nn.Sequential(*block(1, 32), *block(32, 64), nn.Flatten(), nn.Linear(64 * 7 * 7, 256, bias=False),
                         nn.BatchNorm1d(256, eps=1e-3), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 10))


def augment(x, generator):
    """convnet's Augmentation { flip, translate: 2 }: each image mirrored left-right with
    probability ½ and shifted by -2..2 pixels each way, zeros filling in."""
    n = x.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (2, 2, 2, 2))
    dy, dx = torch.randint(0, 5, (2, n), generator=generator).tolist()
    return torch.stack([padded[i, :, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28] for i in range(n)])


def steady_epoch(engine, name, model, augmented=False):
    """The second of two epochs (batch 128, Adam), Fashion-MNIST already in memory."""
    d = fashion_mnist_dir()
    x = torch.from_numpy(read_idx(os.path.join(d, "train-images-idx3-ubyte.gz")).astype(np.float32) / 255.0)
    y = torch.from_numpy(read_idx(os.path.join(d, "train-labels-idx1-ubyte.gz")).astype(np.int64))
    x = engine.tensor(x.unsqueeze(1))
    torch.manual_seed(1)
    generator = torch.Generator().manual_seed(1)
    model = engine.module(model).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)

    def epoch():
        start = time.perf_counter()
        order = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = order[i:i + 128]
            xb = engine.tensor(augment(x[idx], generator)) if augmented else x[idx]
            opt.zero_grad()
            F.cross_entropy(model(xb), y[idx]).backward()
            opt.step()
        return (time.perf_counter() - start) * 1e3

    epoch()
    return [(name, epoch())]


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


def torchvision_network(name):
    import torchvision
    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None).eval()


def network(engine, workload, batches, onnx_dir):
    net = NETWORKS[workload]
    onnx = os.path.join(onnx_dir, f"{net}.onnx") if onnx_dir else None
    if engine.config == "ort" and not (onnx and os.path.exists(onnx)):
        sys.exit(f"{workload} in ONNX Runtime needs --onnx-dir with {net}.onnx (run `export` first)")
    model = torchvision_network(net)
    label = {"W7": "W7 ResNet50 224x224", "W8": "W8 MobileNetV2 224x224", "W9": "W9 EfficientNetB0 224x224"}[workload]
    return [(f"{label} inference, batch {b}", engine.inference_ms(model, torch.rand(b, 3, 224, 224), onnx))
            for b in batches]


def resnet50_step(engine):
    """W10: one SGD training step of torchvision's ResNet50 at batch 16."""
    model = engine.module(torchvision_network("resnet50").train())
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = engine.tensor(torch.rand(16, 3, 224, 224))
    y = torch.randint(0, 1000, (16,))

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return [("W10 ResNet50 224x224 SGD training step, batch 16", median_ms(step))]


WORKLOADS = {
    "W1": lambda e, _: steady_epoch(e, "W1 fmnist_cnn epoch", FmnistCnn()),
    "W2": lambda e, _: layer(e, "W2 conv3x3 64->64 56x56 b8", (8, 56, 56, 64), nn.Conv2d(64, 64, 3, padding=1)),
    "W3": lambda e, _: layer(e, "W3 conv1x1 64->256 56x56 b8", (8, 56, 56, 64), nn.Conv2d(64, 256, 1)),
    "W4": lambda e, _: layer(e, "W4 depthwise3x3 32ch 112x112 b8", (8, 112, 112, 32),
                             nn.Conv2d(32, 32, 3, padding=1, groups=32)),
    "W5": lambda e, _: [("W5 seed inception 224x224x3 b4 inference, batch 4",
                         e.inference_ms(Inception(), torch.rand(4, 3, 224, 224)))],
    "W6": lambda e, _: [("W6 mobilenet block 224x224x3 inference, batch 1",
                         e.inference_ms(MobileNetBlock(), torch.rand(1, 3, 224, 224)))],
    "W7": lambda e, d: network(e, "W7", [1, 16], d),
    "W8": lambda e, d: network(e, "W8", [1], d),
    "W9": lambda e, d: network(e, "W9", [1], d),
    "W10": lambda e, _: resnet50_step(e),
    "W11": lambda e, _: steady_epoch(e, "W11 fmnist_deep epoch", fmnist_deep(), augmented=True),
}


def export(directory):
    """torchvision's W7-W9 networks as ONNX files, a dynamic batch axis."""
    os.makedirs(directory, exist_ok=True)
    for net in NETWORKS.values():
        path = os.path.join(directory, f"{net}.onnx")
        torch.onnx.export(torchvision_network(net), (torch.zeros(1, 3, 224, 224),), path, dynamo=True,
                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, input_names=["x"],
                          external_data=False, verbose=False)
        print(path)


def main():
    if sys.argv[1:2] == ["export"]:
        return export(sys.argv[2])
    p = argparse.ArgumentParser()
    p.add_argument("workload", choices=sorted(WORKLOADS))
    p.add_argument("--config", choices=["contiguous", "channels_last", "ort"], default="contiguous")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--onnx-dir")
    p.add_argument("--json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    results = WORKLOADS[a.workload](Engine(a.config, a.threads), a.onnx_dir)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    engine, version = ("onnxruntime", None) if a.config == "ort" else ("pytorch", torch.__version__)
    if version is None:
        import onnxruntime
        version = onnxruntime.__version__
    lines = []
    for name, ms in results:
        print(f"{name:<56} {ms:>10.2f} ms")
        lines.append(json.dumps({"engine": engine, "config": a.config, "version": version, "name": name, "ms": ms,
                                 "threads": a.threads, "peak_mb": peak_mb}))
    print(f"peak memory: {peak_mb:.0f} MiB")
    if a.json:
        with open(a.json, "a") as f:
            f.write("".join(l + "\n" for l in lines))


if __name__ == "__main__":
    main()
