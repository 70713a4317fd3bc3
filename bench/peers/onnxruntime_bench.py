#!/usr/bin/env python3
"""Times an ONNX file in ONNX Runtime as convnet's inference is timed: a batch of zeros
in the model's NHWC input shape, warm-up runs first, then the median of the timed runs.

    python onnxruntime_bench.py MODEL.onnx --batch 1 --threads 2 [--runs 20] [--optimization all]

Prints one line: `ms <median milliseconds>`. ONNX Runtime runs with the given graph
optimization level (`all`, its default, which folds BatchNormalization into the
convolutions and fuses activations; `basic`; or `disabled`) and intra-op thread count.
"""
import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--optimization", choices=["all", "basic", "disabled"], default="all")
    a = p.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = a.threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[a.optimization]
    session = ort.InferenceSession(a.model, options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    shape = [a.batch] + [d if isinstance(d, int) else 1 for d in inp.shape[1:]]
    x = np.zeros(shape, np.float32)
    for _ in range(3):
        session.run(None, {inp.name: x})
    times = []
    for _ in range(a.runs):
        start = time.perf_counter()
        session.run(None, {inp.name: x})
        times.append((time.perf_counter() - start) * 1000)
    print(f"ms {statistics.median(times):.3f}")


if __name__ == "__main__":
    main()
