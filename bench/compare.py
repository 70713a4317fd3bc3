#!/usr/bin/env python3
"""Runs the workloads W1-W6 in convnet, PyTorch and Keras, alternately on this machine,
and writes the table of ratios (convnet time / PyTorch time) to BENCHMARKS.md.

    bench/peers/setup.sh            # once: a virtualenv with torch and tensorflow-cpu
    python3 bench/compare.py        # builds convnet, runs everything, writes BENCHMARKS.md

Each workload runs in a fresh process per engine (so peak memory is the workload's), in
rounds: convnet, PyTorch, Keras, convnet, PyTorch, Keras, ... The table shows the median
over the rounds. Options: --rounds N, --only W2,W3, --threads N, --no-keras,
--python PATH (the peers' interpreter), --output FILE.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "bench", "peers")
DEFAULT_PYTHON = os.path.expanduser("~/.venvs/convnet-peers/bin/python")

# (workload, the name's mode suffix, target ratio convnet/PyTorch)
TARGETS = {
    "W1 fmnist_cnn epoch": 0.6,
    "W2 conv3x3 64->64 56x56 b8 forward": 1.2,
    "W2 conv3x3 64->64 56x56 b8 forward+backward": 1.2,
    "W3 conv1x1 64->256 56x56 b8 forward": 1.0,
    "W3 conv1x1 64->256 56x56 b8 forward+backward": 1.0,
    "W4 depthwise3x3 32ch 112x112 b8 forward": 0.8,
    "W4 depthwise3x3 32ch 112x112 b8 forward+backward": 0.8,
    "W5 seed inception 224x224x3 b4 inference": 0.5,
    "W6 mobilenet block 224x224x3 b1 latency": 0.8,
}


def run(cmd, env=None):
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sys.stdout.write("".join(l + "\n" for l in done.stdout.splitlines() if "ms" in l or "peak" in l or "rror" in l))
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stdout[-3000:]}")


def machine():
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        mem = 0
    return f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} {platform.release()}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", default="W1,W2,W3,W4,W5,W6")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--python", default=DEFAULT_PYTHON)
    p.add_argument("--no-keras", action="store_true")
    p.add_argument("--output", default=os.path.join(ROOT, "BENCHMARKS.md"))
    a = p.parse_args()
    if not os.path.exists(a.python):
        sys.exit(f"no interpreter at {a.python}: run bench/peers/setup.sh (or pass --python)")

    run(["cargo", "build", "--release", "-p", "convnet-cli"])
    convnet = os.path.join(ROOT, "target", "release", "convnet")
    results = tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False).name
    threads = str(a.threads)
    engines = [("convnet", [convnet, "bench", "--threads", threads, "--json", results, "--workload"]),
               ("pytorch", [a.python, os.path.join(PEERS, "torch_bench.py"), "--threads", threads, "--json", results])]
    if not a.no_keras:
        engines.append(("keras", [a.python, os.path.join(PEERS, "keras_bench.py"), "--threads", threads, "--json", results]))
    workloads = [w.strip().upper() for w in a.only.split(",") if w.strip()]
    for w in workloads:
        for _ in range(a.rounds):
            for _, cmd in engines:
                run(cmd + [w])

    rows = {}
    for line in open(results):
        r = json.loads(line)
        rows.setdefault(r["name"], {}).setdefault(r["engine"], []).append(r)
    os.unlink(results)
    versions = {}
    for by_engine in rows.values():
        for engine, rs in by_engine.items():
            versions[engine] = rs[0].get("version", "")
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    peak = next((r["peak_gflops"] for by in rows.values() for r in by.get("convnet", []) if r.get("peak_gflops")), None)

    def median(name, engine, key="ms"):
        values = [r[key] for r in rows.get(name, {}).get(engine, []) if r.get(key) is not None]
        return statistics.median(values) if values else None

    def cell(v, fmt="{:.2f}"):
        return fmt.format(v) if v is not None else "–"

    out = [
        "# Benchmarks: convnet beside PyTorch and Keras",
        "",
        f"Made by `python3 bench/compare.py` on {datetime.date.today().isoformat()}: {a.rounds} alternating rounds, "
        f"the median of each; {threads} threads for every engine.",
        "",
        f"- Machine: {machine()}; peak f32 measured by an FMA loop: {cell(peak, '{:.1f}')} GFLOP/s",
        f"- convnet: {rustc}; PyTorch {versions.get('pytorch', '?')} (channels_last); {versions.get('keras', 'Keras not run')}",
        "",
        "| workload | convnet ms | PyTorch ms | Keras ms | convnet / PyTorch | target | met |",
        "|---|---:|---:|---:|---:|---:|:---:|",
    ]
    for name, target in TARGETS.items():
        if name.split()[0] not in workloads:
            continue
        c, t, k = median(name, "convnet"), median(name, "pytorch"), median(name, "keras")
        ratio = c / t if c and t else None
        met = "–" if ratio is None else ("yes" if ratio <= target else "**no**")
        out.append(f"| {name} | {cell(c)} | {cell(t)} | {cell(k)} | {cell(ratio)} | ≤ {target} | {met} |")
    if "W1" in workloads:
        name = "W1 fmnist_cnn epoch"
        c, t, k = (median(name, e, "peak_mb") for e in ("convnet", "pytorch", "keras"))
        met = "–" if not (c and t) else ("yes" if c <= t else "**no**")
        out.append(f"| W1 peak memory (MiB) | {cell(c, '{:.0f}')} | {cell(t, '{:.0f}')} | {cell(k, '{:.0f}')} | "
                   f"{cell(c / t if c and t else None)} | ≤ 1 | {met} |")
    out += [
        "",
        "W1 is one epoch of the reference CNN on Fashion-MNIST (batch 128, Adam), data loading included, in a",
        "fresh process. W2–W4 are single layers (forward: inference; forward+backward: input and weight",
        "gradients). W5 is the seed's Inception block at batch 4, W6 the MobileNet-style stack at batch 1.",
        "Peak memory is the process's peak resident set (PyTorch's and Keras's include their runtimes).",
        "",
    ]
    with open(a.output, "w") as f:
        f.write("\n".join(out))
    print("\n".join(out))


if __name__ == "__main__":
    main()
