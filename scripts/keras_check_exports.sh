#!/usr/bin/env bash
# Opens every .keras file convnet exported (examples/export_models.rs) in Keras 3 and
# compares Keras's predictions with convnet's (NAME.input.npy in, NAME.convnet.npy
# expected; EXPECT=torch compares with NAME.torch.npy, PyTorch's outputs for the
# models convnet imported from ONNX: tests/onnx_import.rs's ignored test writes them).
# Needs a Python with Keras 3:
#   python3 -m venv ~/.venvs/keras && ~/.venvs/keras/bin/pip install tensorflow-cpu
#   PYTHON=~/.venvs/keras/bin/python scripts/keras_check_exports.sh exported
# The checker is keras_check.py (from the project's shared tools; pass its path as
# KERAS_CHECK if it is not ../shared/tools/keras_check.py).
set -euo pipefail
dir=${1:-exported}
python=${PYTHON:-python3}
here=$(cd "$(dirname "$0")/.." && pwd)
check=${KERAS_CHECK:-$here/../shared/tools/keras_check.py}
expect=${EXPECT:-convnet}
status=0
for model in "$dir"/*.keras; do
    stem=${model%.keras}
    echo "== $(basename "$model")"
    "$python" "$check" "$model" "$stem.input.npy" --expect "$stem.$expect.npy" || status=1
done
exit $status
