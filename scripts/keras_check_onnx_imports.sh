#!/usr/bin/env bash
# Opens each .keras file that convnet made from a PyTorch ONNX export (the ignored test
# `torchvision_cnns_predict_as_in_pytorch` in tests/onnx_import.rs writes them) in Keras
# 3, and compares Keras's predictions on the NHWC input with PyTorch's:
#   /path/to/torch/python scripts/make_torch_onnx.py DIR
#   CONVNET_TORCH_ONNX=DIR cargo test --release --test onnx_import -- --ignored
#   PYTHON=~/.venvs/keras/bin/python scripts/keras_check_onnx_imports.sh DIR
# The checker is keras_check.py (from the project's shared tools; pass its path as
# KERAS_CHECK if it is not ../shared/tools/keras_check.py).
set -euo pipefail
dir=${1:?the folder make_torch_onnx.py wrote}
python=${PYTHON:-python3}
here=$(cd "$(dirname "$0")/.." && pwd)
check=${KERAS_CHECK:-$here/../shared/tools/keras_check.py}
status=0
for model in "$dir"/*.keras; do
    stem=${model%.keras}
    echo "== $(basename "$model")"
    "$python" "$check" "$model" "${stem}_input_nhwc.npy" --expect "${stem}_torch.npy" || status=1
done
exit $status
