"""Writes the PyTorch CNNs that convnet's ONNX import is checked on: each module with
seeded random weights (BatchNormalization's statistics drawn too, so they count), the
`.onnx` file `torch.onnx.export` writes for it, an NCHW input and PyTorch's output.

    python scripts/make_torch_onnx.py OUT_DIR [NAME...]

NAMEs: custom_cnn (grouped, dilated and depthwise convolutions, BatchNormalization,
ReLU6, SiLU, LeakyReLU, concatenation, padded pooling, a flatten of a 4x4 map, two
dense layers), resnet18, mobilenet_v2 (torchvision's, weights=None). Each is written
twice, by the default (dynamo) exporter as NAME.onnx and by the TorchScript one as
NAME_legacy.onnx, with NAME_input.npy and NAME_torch.npy beside them. The custom CNN is
small and committed under crates/convnet/tests/golden/onnx_import; the torchvision ones
are for the ignored test (`pip install torch torchvision onnx onnxscript numpy`).
"""
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class CustomCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.stem_bn = nn.BatchNorm2d(16)
        self.grouped = nn.Conv2d(16, 32, 3, padding=1, groups=4)
        self.dilated = nn.Conv2d(32, 32, 3, padding=2, dilation=2, bias=False)
        self.dilated_bn = nn.BatchNorm2d(32)
        self.depthwise = nn.Conv2d(32, 32, 3, stride=2, padding=1, groups=32)
        self.branch1 = nn.Conv2d(32, 16, 1)
        self.branch3 = nn.Conv2d(32, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.pool_bn = nn.BatchNorm2d(32)
        self.avg = nn.AvgPool2d(3, stride=1, padding=1)
        self.fc1 = nn.Linear(32 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem(x)))
        x = F.relu6(self.grouped(x))
        x = F.silu(self.dilated_bn(self.dilated(x)))
        x = F.leaky_relu(self.depthwise(x), 0.1)
        x = torch.cat([F.relu(self.branch1(x)), torch.sigmoid(self.branch3(x))], 1)
        x = self.avg(self.pool_bn(self.pool(x)))
        x = torch.flatten(x, 1)
        x = torch.tanh(self.fc1(x))
        return F.softmax(self.fc2(x), dim=1)


def model(name):
    import torchvision

    if name == "custom_cnn":
        return CustomCNN(), (1, 3, 16, 16)
    if name == "resnet18":
        return torchvision.models.resnet18(weights=None), (1, 3, 224, 224)
    if name == "mobilenet_v2":
        return torchvision.models.mobilenet_v2(weights=None), (1, 3, 224, 224)
    raise SystemExit(f"unknown model {name}")


def randomize_batch_norms(module, generator):
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = 1 + 0.2 * (torch.rand(c, generator=generator) - 0.5)
            m.bias.data = 0.2 * (torch.rand(c, generator=generator) - 0.5)
            m.running_mean.data = 0.2 * (torch.rand(c, generator=generator) - 0.5)
            m.running_var.data = 1 + 0.2 * (torch.rand(c, generator=generator) - 0.5)


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    names = sys.argv[2:] or ["custom_cnn", "resnet18", "mobilenet_v2"]
    for name in names:
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(1)
        module, shape = model(name)
        randomize_batch_norms(module, generator)
        module.eval()
        x = torch.randn(*shape, generator=generator)
        with torch.no_grad():
            y = module(x)
        np.save(out / f"{name}_input.npy", x.numpy())
        np.save(out / f"{name}_torch.npy", y.numpy())
        torch.onnx.export(module, (x,), out / f"{name}.onnx", dynamo=True,
                          input_names=["input"], output_names=["output"])
        torch.onnx.export(module, (x,), out / f"{name}_legacy.onnx", dynamo=False,
                          input_names=["input"], output_names=["output"])
        print(name, "written")


if __name__ == "__main__":
    main()
