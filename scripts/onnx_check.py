#!/usr/bin/env python3
"""Checks ONNX files convnet exported: each passes onnx.checker (full check, with shape
inference) and, run in ONNX Runtime on the given inputs, gives the expected outputs
within a relative error.

    python onnx_check.py CASES.json

CASES.json lists {"onnx": FILE, "inputs": [X.npy, ...], "outputs": [Y.npy, ...],
"rtol": 1e-5}; the error of an output is max|got - want| / max(max|want|, 1e-6).
Prints one line per case and exits non-zero when any fails.
(pip install onnx onnxruntime numpy)
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def check(case):
    model = onnx.load(case["onnx"])
    onnx.checker.check_model(model, full_check=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(case["onnx"], options, providers=["CPUExecutionProvider"])
    feeds = {
        i.name: np.load(path) for i, path in zip(session.get_inputs(), case["inputs"])
    }
    got = session.run(None, feeds)
    worst = 0.0
    for g, path in zip(got, case["outputs"]):
        want = np.load(path)
        if g.shape != want.shape:
            raise ValueError(f"output shape {g.shape}, expected {want.shape}")
        scale = max(float(np.abs(want).max()), 1e-6)
        worst = max(worst, float(np.abs(g - want).max()) / scale)
    return worst


def main():
    cases = json.load(open(sys.argv[1]))
    failed = 0
    for case in cases:
        try:
            error = check(case)
            ok = error <= case.get("rtol", 1e-5)
            print(f"{'ok  ' if ok else 'FAIL'} {case['onnx']}: relative error {error:.2e}")
        except Exception as e:  # one line a case, whatever failed
            ok = False
            print(f"FAIL {case['onnx']}: {type(e).__name__}: {e}".replace("\n", " "))
        failed += not ok
    print(f"{len(cases) - failed} of {len(cases)} files pass")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
