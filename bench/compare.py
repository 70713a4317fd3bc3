#!/usr/bin/env python3
"""Runs the comparison workloads W1-W11 in convnet and its peers (PyTorch in both memory
formats, ONNX Runtime, Keras with and without XLA), alternately on this machine, at each
thread count, and writes BENCHMARKS.md: every configuration's time, the ratio of
convnet's time to the best peer's, and whether each target is met.

    bench/peers/setup.sh                       # once: the peers' virtualenv
    python3 bench/compare.py --python ~/.venvs/convnet-peers/bin/python

Each workload runs in a fresh process per engine and configuration (so a process's peak
memory is its workload's), in rounds: convnet, PyTorch contiguous, PyTorch channels_last,
ONNX Runtime, Keras, Keras with jit_compile, then again. The table shows each one's
fastest round (an inference workload's round is itself the median of its calls).
Options: --rounds N (--rounds-long N for W11, --rounds-at-1 N for the 1-thread table),
--only W2,W7, --threads 2,1 (each count a table of its own),
--skip-at-1 W10,W11 (workloads left out of the 1-thread table),
--keras-python PATH (when Keras lives in another virtualenv), --keep (keep the last
run's results for the workloads not in --only, to finish an interrupted run or measure
some again), --report-only (write BENCHMARKS.md from the last results), --output FILE.
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "bench", "peers")
RESULTS = os.path.join(ROOT, "target", "bench", "results.jsonl")
ONNX_DIR = os.path.join(ROOT, "target", "bench", "torchvision")
DEFAULT_PYTHON = os.path.expanduser("~/.venvs/convnet-peers/bin/python")
WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10", "W11"]
# ONNX Runtime runs inference only: these workloads' forward passes.
ONNX_RUNTIME = {"W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9"}
NETWORKS = {"W7": ("resnet50", 16), "W8": ("mobilenet_v2", 1), "W9": ("efficientnet_b0", 1)}
LABELS = {"W7": "W7 ResNet50 224x224", "W8": "W8 MobileNetV2 224x224", "W9": "W9 EfficientNetB0 224x224"}

# Columns: (engine, config, heading). "convnet imported" is convnet on the ONNX file of
# torchvision's network that ONNX Runtime runs: the peers' architecture.
COLUMNS = [
    ("convnet", "", "convnet"),
    ("convnet", "imported", "convnet, torchvision's network imported"),
    ("pytorch", "contiguous", "PyTorch contiguous"),
    ("pytorch", "channels_last", "PyTorch channels_last"),
    ("onnxruntime", "ort", "ONNX Runtime"),
    ("keras", "graph", "Keras"),
    ("keras", "jit_compile", "Keras jit_compile"),
]

# Target: convnet's time over the best peer's.
TARGETS = {
    "W1 fmnist_cnn epoch": 0.6,
    "W2 conv3x3 64->64 56x56 b8 forward": 0.75,
    "W2 conv3x3 64->64 56x56 b8 forward+backward": 0.75,
    "W3 conv1x1 64->256 56x56 b8 forward": 0.75,
    "W3 conv1x1 64->256 56x56 b8 forward+backward": 0.75,
    "W4 depthwise3x3 32ch 112x112 b8 forward": 0.75,
    "W4 depthwise3x3 32ch 112x112 b8 forward+backward": 0.75,
    "W5 seed inception 224x224x3 b4 inference, batch 4": 0.35,
    "W6 mobilenet block 224x224x3 inference, batch 1": 0.5,
    "W7 ResNet50 224x224 inference, batch 1": 1.0,
    "W7 ResNet50 224x224 inference, batch 16": 0.8,
    "W8 MobileNetV2 224x224 inference, batch 1": 1.0,
    "W9 EfficientNetB0 224x224 inference, batch 1": 1.0,
    "W10 ResNet50 224x224 SGD training step, batch 16": 0.8,
    "W11 fmnist_deep epoch": None,
}
WHOLE_PROCESS = "W1 whole process: start-up, loading, two epochs"
LONG = {"W11"}  # minutes a configuration: --rounds-long of them


def run(cmd, label):
    print(f"$ {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = (time.perf_counter() - start) * 1e3
    shown = [l for l in done.stdout.splitlines() if re.search(r"[0-9] ms\b|^peak|rror", l)]
    sys.stdout.write("".join(f"  {label}: {l.strip()}\n" for l in shown))
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stdout[-3000:]}")
    return wall


def commands(a, workload, threads, results):
    """(engine, config, command) of every configuration that runs this workload."""
    t = ["--threads", str(threads), "--json", results]
    convnet = os.path.join(ROOT, "target", "release", "convnet")
    torch = [a.python, os.path.join(PEERS, "torch_bench.py"), workload, "--onnx-dir", ONNX_DIR] + t
    keras = [a.keras_python, os.path.join(PEERS, "keras_bench.py"), workload] + t
    out = [("convnet", "", [convnet, "bench", "--workload", workload] + t)]
    if workload in NETWORKS:
        net, batch = NETWORKS[workload]
        out.append(("convnet", "imported", [convnet, "bench", os.path.join(ONNX_DIR, f"{net}.onnx"),
                                            "--inference-only", "--batch-size", str(batch)] + t))
    out += [("pytorch", c, torch + ["--config", c]) for c in ("contiguous", "channels_last")]
    if workload in ONNX_RUNTIME:
        out.append(("onnxruntime", "ort", torch + ["--config", "ort"]))
    out += [("keras", "graph", keras), ("keras", "jit_compile", keras + ["--jit"])]
    return out


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


def collect(a, thread_counts, workloads):
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    if a.keep and os.path.exists(RESULTS):
        # The other workloads' rows stay; these are measured again.
        kept = [l for l in open(RESULTS) if json.loads(l)["workload"] not in workloads]
        with open(RESULTS, "w") as f:
            f.write("".join(kept))
    elif os.path.exists(RESULTS):
        os.unlink(RESULTS)
    if any(w in NETWORKS for w in workloads) and not os.path.exists(os.path.join(ONNX_DIR, "resnet50.onnx")):
        run([a.python, os.path.join(PEERS, "torch_bench.py"), "export", ONNX_DIR], "export")
    for threads in thread_counts:
        for w in workloads:
            if threads == 1 and w in a.skip_at_1:
                continue
            scratch = RESULTS + ".part"
            if os.path.exists(scratch):
                os.unlink(scratch)
            rows = []
            rounds = a.rounds_at_1 if threads == 1 else (a.rounds_long if w in LONG else a.rounds)
            for r in range(rounds):
                for engine, config, cmd in commands(a, w, threads, scratch):
                    wall = run(cmd, f"{w} {threads}t round {r + 1} {engine} {config}")
                    for line in open(scratch):
                        row = json.loads(line)
                        if config == "imported":
                            # `convnet bench FILE` names its rows after the file.
                            row["name"] = LABELS[w] + row["name"][row["name"].index(" inference"):]
                        rows.append(dict(row, engine=engine, config=config, workload=w))
                    os.unlink(scratch)
                    if w == "W1":
                        rows.append({"engine": engine, "config": config, "workload": w, "name": WHOLE_PROCESS,
                                     "ms": wall, "threads": threads})
            with open(RESULTS, "a") as out:
                out.write("".join(json.dumps(r) + "\n" for r in rows))


def cell(v, fmt="{:.2f}"):
    return fmt.format(v) if v is not None else "–"


def table(rows, threads):
    """The Markdown table of one thread count."""
    def fastest(name, engine, config, key="ms"):
        """The best of the rounds: noise on a shared machine only ever adds time."""
        vs = [r[key] for r in rows if r["name"] == name and r["engine"] == engine and r["config"] == config
              and r["threads"] == threads and r.get(key) is not None]
        return min(vs) if vs else None

    names = [n for n in list(TARGETS) + [WHOLE_PROCESS] if any(r["name"] == n and r["threads"] == threads
                                                                for r in rows)]
    head = "| workload | " + " | ".join(f"{h} ms" for _, _, h in COLUMNS) + \
        " | best peer | convnet / best peer | target | met |"
    out = [head, "|---|" + "---:|" * len(COLUMNS) + "---|---:|---:|:---:|"]
    met_count = [0, 0]
    for name in names:
        times = {(e, c): fastest(name, e, c) for e, c, _ in COLUMNS}
        ours = times[("convnet", "imported")] or times[("convnet", "")]
        networks = name.split()[0] in NETWORKS
        peers = {h: times[(e, c)] for e, c, h in COLUMNS
                 if e != "convnet" and times[(e, c)] is not None and not (networks and e == "keras")}
        best = min(peers, key=peers.get) if peers else None
        ratio = ours / peers[best] if best and ours else None
        target = TARGETS.get(name)
        met = "–"
        if ratio is not None and target is not None:
            met = "yes" if ratio <= target else "**no**"
            met_count[0] += ratio <= target
            met_count[1] += 1
        out.append(f"| {name} | " + " | ".join(cell(times[(e, c)]) for e, c, _ in COLUMNS) +
                   f" | {best or '–'} | {cell(ratio)} | {cell(target, '≤ {}')} | {met} |")
    for workload in ("W1", "W11"):
        name = next((n for n in TARGETS if n.startswith(workload + " ")), None)
        peaks = {(e, c): fastest(name, e, c, "peak_mb") for e, c, _ in COLUMNS}
        peer_peaks = {h: peaks[(e, c)] for e, c, h in COLUMNS if e != "convnet" and peaks[(e, c)]}
        if not peaks[("convnet", "")] or not peer_peaks:
            continue
        best = min(peer_peaks, key=peer_peaks.get)
        ratio = peaks[("convnet", "")] / peer_peaks[best]
        met_count[0] += ratio <= 1
        met_count[1] += 1
        out.append(f"| {workload} peak memory (MiB) | " + " | ".join(cell(peaks[(e, c)], "{:.0f}") for e, c, _ in COLUMNS) +
                   f" | {best} | {ratio:.2f} | ≤ 1 | {'yes' if ratio <= 1 else '**no**'} |")
    return out, met_count


def rates(rows, thread_counts):
    """convnet's arithmetic rate on the workloads whose FLOPs it knows."""
    out = ["| workload | threads | convnet GFLOP/s | what it counts | share of the FMA peak (GFLOP/s) |",
           "|---|---:|---:|---|---:|"]
    for threads in thread_counts:
        for name in TARGETS:
            rs = [r for r in rows if r["name"] == name and r["engine"] == "convnet" and r["config"] == ""
                  and r["threads"] == threads and r.get("gflops")]
            if rs:
                best = max(rs, key=lambda r: r["gflops"])
                g, peak = best["gflops"], best["peak_gflops"]
                out.append(f"| {name} | {threads} | {g:.1f} | {best['flops_kind']} | {100 * g / peak:.0f}% of {peak:.0f} |")
    return out


def write(a, thread_counts):
    rows = [json.loads(l) for l in open(RESULTS)]
    versions = {r["engine"]: r["version"] for r in rows if r.get("version")}
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    out = [
        "# Benchmarks: convnet beside PyTorch, ONNX Runtime and Keras",
        "",
        f"Made by `python3 bench/compare.py` on {datetime.date.today().isoformat()}: each configuration's "
        f"fastest time over {a.rounds} alternating rounds at 2 threads ({a.rounds_long} for "
        f"{', '.join(sorted(LONG))}), {a.rounds_at_1} at 1 thread. Every time is a warm call or a steady-state "
        "epoch in an already-running process, except the whole-process row.",
        "",
        f"- Machine: {machine()}",
        f"- convnet: {rustc}; PyTorch {versions.get('pytorch', 'not run')}; ONNX Runtime "
        f"{versions.get('onnxruntime', 'not run')}; {versions.get('keras', 'Keras not run')}",
        "",
    ]
    for threads in thread_counts:
        lines, (met, total) = table(rows, threads)
        if len(lines) <= 2:
            continue
        measured = {(r["workload"], r["threads"]) for r in rows}
        skipped = [w for w in WORKLOADS if (w, threads) not in measured and any(m[0] == w for m in measured)]
        count = f"{threads} thread{'s' if threads > 1 else ''}"
        out += [f"## {count}", "",
                f"Targets met: {met} of {total}." + (f" Not run at {count}: {', '.join(skipped)}." if skipped else ""),
                ""] + lines + [""]
    out += ["## convnet's arithmetic rate", ""] + rates(rows, thread_counts) + [""]
    with open(os.path.join(ROOT, "bench", "notes.md")) as f:
        out.append(f.read())
    with open(a.output, "w") as f:
        f.write("\n".join(out))
    print("\n".join(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--rounds-long", type=int, default=1)
    p.add_argument("--rounds-at-1", type=int, default=1)
    p.add_argument("--only", default=",".join(WORKLOADS))
    p.add_argument("--threads", default="2,1")
    p.add_argument("--skip-at-1", default="W10,W11")
    p.add_argument("--python", default=DEFAULT_PYTHON)
    p.add_argument("--keras-python")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--report-only", action="store_true", help="write BENCHMARKS.md from the last results")
    p.add_argument("--output", default=os.path.join(ROOT, "BENCHMARKS.md"))
    a = p.parse_args()
    a.keras_python = a.keras_python or a.python
    a.skip_at_1 = {w.strip().upper() for w in a.skip_at_1.split(",") if w.strip()}
    thread_counts = [int(t) for t in a.threads.split(",")]
    workloads = [w.strip().upper() for w in a.only.split(",") if w.strip()]
    if not a.report_only:
        for py in {a.python, a.keras_python}:
            if not os.path.exists(py):
                sys.exit(f"no interpreter at {py}: run bench/peers/setup.sh (or pass --python)")
        run(["cargo", "build", "--release", "-p", "convnet-cli"], "build")
        collect(a, thread_counts, workloads)
    write(a, thread_counts)


if __name__ == "__main__":
    main()
