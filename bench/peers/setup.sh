#!/bin/sh
# The peers of bench/compare.py, from PyPI, in a virtualenv outside the repository:
# PyTorch and torchvision (CPU kernels from oneDNN), ONNX Runtime with the exporter's
# onnx and onnxscript, and Keras 3 on TensorFlow.
#   bench/peers/setup.sh [VENV]     (default ~/.venvs/convnet-peers)
set -eu
venv="${1:-$HOME/.venvs/convnet-peers}"
python3 -m venv "$venv"
"$venv/bin/pip" install --upgrade pip
"$venv/bin/pip" install numpy torch torchvision onnx onnxscript onnxruntime tensorflow-cpu
echo "peers installed in $venv; now run: python3 bench/compare.py --python $venv/bin/python"
