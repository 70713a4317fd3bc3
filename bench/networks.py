#!/usr/bin/env python3
"""Whole networks: convnet's inference beside ONNX Runtime's and PyTorch's.

    python3 bench/networks.py [--python PATH] [--torch-python PATH] [--rounds 3] [--threads 2]

Each keras.applications network is built by convnet (random weights), timed by
`convnet bench` (inference at batch 1, and at batch 16 for ResNet50), and exported with
`convnet export` to ONNX, which ONNX Runtime times at each of its graph optimization
levels (`all`: Conv+BatchNorm folding and fused activations; `basic`; `disabled`;
`bench/peers/onnxruntime_bench.py`). Both time a warm call on one input, take the
median, and use the same thread count; the rounds alternate the engines. PATH is a
Python with `onnxruntime` and `numpy`. Prints a Markdown table of the medians, each
ONNX Runtime level's, and the ratio convnet / the fastest level.

With --torch-python (a Python with `torch`, `torchvision`, `onnxscript` and
`onnxruntime`), each network is also run as torchvision builds it: PyTorch in both
memory formats (`bench/peers/torch_networks.py`), ONNX Runtime (level `all`) on the
file `torch.onnx.export` writes for it, and convnet on the same file, which it imports
as Keras layers. A second table compares those, one architecture in every engine.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONVNET = os.path.join(ROOT, "target", "release", "convnet")
ORT_BENCH = os.path.join(ROOT, "bench", "peers", "onnxruntime_bench.py")
TORCH_BENCH = os.path.join(ROOT, "bench", "peers", "torch_networks.py")

# (workload, network, batch)
WORKLOADS = [
    ("W7 ResNet50 224x224 b1 latency", "resnet50", 1),
    ("W7 ResNet50 224x224 b16 per batch", "resnet50", 16),
    ("W8 MobileNetV2 224x224 b1 latency", "mobilenet_v2", 1),
    ("W9 EfficientNetB0 224x224 b1 latency", "efficientnet_b0", 1),
]


def output(cmd, env=None):
    done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stdout[-3000:]}")
    return done.stdout


def convnet_ms(network, batch, threads):
    """The last `inference, batch N` line of `convnet bench` (its second, warm timing);
    `network` is a built-in name or a model file."""
    text = output([CONVNET, "bench", network, "--batch-size", str(batch), "--threads", str(threads)])
    times = re.findall(rf"inference, batch {batch}\s+([0-9.]+) ms", text)
    return float(times[-1])


LEVELS = ["all", "basic", "disabled"]


def ort_ms(python, onnx, batch, threads, level):
    text = output([python, ORT_BENCH, onnx, "--batch", str(batch), "--threads", str(threads),
                   "--optimization", level])
    return float(text.split()[-1])


def torch_ms(python, network, batch, threads, export=None):
    """PyTorch's median in each memory format: {"contiguous": ms, "channels_last": ms}."""
    cmd = [python, TORCH_BENCH, network, "--batch", str(batch), "--threads", str(threads)]
    text = output(cmd + (["--export", export] if export else []))
    return {k: float(v) for k, v in re.findall(r"^(contiguous|channels_last) ([0-9.]+)$", text, re.M)}


def torchvision_rows(a, env, tmp):
    """The same architecture in every engine: torchvision's network in PyTorch (both
    formats), in ONNX Runtime and in convnet (both on torch.onnx.export's file)."""
    rows = []
    for name, network, batch in WORKLOADS:
        onnx = os.path.join(tmp, f"{network}_torchvision.onnx")
        if not os.path.exists(onnx):
            torch_ms(a.torch_python, network, 1, a.threads, export=onnx)
        ours, ort, formats = [], [], {"contiguous": [], "channels_last": []}
        for _ in range(a.rounds):
            ours.append(convnet_ms(onnx, batch, a.threads))
            ort.append(ort_ms(a.torch_python, onnx, batch, a.threads, "all"))
            for k, v in torch_ms(a.torch_python, network, batch, a.threads).items():
                formats[k].append(v)
        c, o = statistics.median(ours), statistics.median(ort)
        t = {k: statistics.median(v) for k, v in formats.items()}
        peers = {"ORT": o, "PyTorch contiguous": t["contiguous"], "PyTorch channels_last": t["channels_last"]}
        best = min(peers, key=peers.get)
        print(f"{name} (torchvision): convnet {c:.2f} ms, {peers}", file=sys.stderr, flush=True)
        rows.append(f"| {name} | {c:.2f} | {o:.2f} | {t['contiguous']:.2f} | {t['channels_last']:.2f} "
                    f"| {c / peers[best]:.2f} ({best}) |")
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--torch-python")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    output(["cargo", "build", "--release", "-p", "convnet-cli"])
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, network, batch in WORKLOADS:
            onnx = os.path.join(tmp, f"{network}.onnx")
            if not os.path.exists(onnx):
                output([CONVNET, "export", network, onnx], env=env)
            ours, theirs = [], {level: [] for level in LEVELS}
            for _ in range(a.rounds):
                ours.append(convnet_ms(network, batch, a.threads))
                for level in LEVELS:
                    theirs[level].append(ort_ms(a.python, onnx, batch, a.threads, level))
            c = statistics.median(ours)
            peer = {level: statistics.median(t) for level, t in theirs.items()}
            best = min(peer, key=peer.get)
            print(f"{name}: convnet {c:.2f} ms, ONNX Runtime {peer}", file=sys.stderr, flush=True)
            cells = " | ".join(f"{peer[level]:.2f}" for level in LEVELS)
            rows.append(f"| {name} | {c:.2f} | {cells} | {c / peer[best]:.2f} ({best}) |")
        same = torchvision_rows(a, env, tmp) if a.torch_python else []
    print("| workload | convnet ms | ORT all ms | ORT basic ms | ORT disabled ms | convnet / fastest ORT |")
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    if same:
        print()
        print("| workload (torchvision's network) | convnet ms (imported) | ORT all ms | PyTorch contiguous ms "
              "| PyTorch channels_last ms | convnet / fastest peer |")
        print("|---|---:|---:|---:|---:|---:|")
        print("\n".join(same))


if __name__ == "__main__":
    main()
