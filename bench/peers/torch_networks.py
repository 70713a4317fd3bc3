#!/usr/bin/env python3
"""Times torchvision's version of a keras.applications network in PyTorch, in both
memory formats, and writes its ONNX export (for ONNX Runtime, and for convnet, which
imports it: the same architecture in every engine).

    python torch_networks.py NETWORK --batch 1 --threads 2 [--runs 20] [--export OUT.onnx]

NETWORK: resnet50, mobilenet_v2 or efficientnet_b0 (weights=None, eval mode, no_grad).
Prints `contiguous <ms>` and `channels_last <ms>`: the median of the timed runs after
warm-up runs, on a batch of zeros, as onnxruntime_bench.py and `convnet bench` time.
"""
import argparse
import statistics
import time

import torch
import torchvision


def median_ms(call, runs):
    for _ in range(3):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("network", choices=["resnet50", "mobilenet_v2", "efficientnet_b0"])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--export")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = getattr(torchvision.models, a.network)(weights=None).eval()
    x = torch.zeros(a.batch, 3, 224, 224)
    with torch.no_grad():
        print(f"contiguous {median_ms(lambda: model(x), a.runs):.3f}")
        cl_model = model.to(memory_format=torch.channels_last)
        cl_x = x.contiguous(memory_format=torch.channels_last)
        print(f"channels_last {median_ms(lambda: cl_model(cl_x), a.runs):.3f}")
    if a.export:
        model = model.to(memory_format=torch.contiguous_format)
        torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), a.export, dynamo=True,
                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
                          input_names=["x"], verbose=False)


if __name__ == "__main__":
    main()
