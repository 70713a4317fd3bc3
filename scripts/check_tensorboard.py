"""Reads a TensorBoard log folder with TensorBoard's own event reader and prints, as
JSON, every scalar of its `train` and `validation` runs as {run: {tag: [[step, value]]}}
and every histogram's value count as {run: {tag: [[step, count]]}} under "histograms".

    pip install tensorboard
    python scripts/check_tensorboard.py LOG_DIR

`tests/training.rs` runs it (`CONVNET_PYTHON=…/python cargo test --release --test
training -- --ignored tensorboard`) on the files convnet's TensorBoard callback wrote.
"""

import json
import os
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main():
    log_dir = sys.argv[1]
    out = {"scalars": {}, "histograms": {}}
    for run in ("train", "validation"):
        acc = EventAccumulator(os.path.join(log_dir, run), size_guidance={"scalars": 0, "histograms": 0})
        acc.Reload()
        tags = acc.Tags()
        out["scalars"][run] = {
            tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in tags["scalars"]
        }
        out["histograms"][run] = {
            tag: [[e.step, e.histogram_value.num] for e in acc.Histograms(tag)]
            for tag in tags["histograms"]
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
