"""Writes small ONNX graphs of the operators convnet imports that PyTorch's CNNs in
make_torch_onnx.py do not use (ConvTranspose, Resize, Slice, Pad, PRelu, MatMul,
LayerNormalization, per-channel arithmetic, an NHWC input behind a Transpose, ...), each
with NAME_input.npy (in the layout the graph takes) and ONNX Runtime's output
NAME_onnxruntime.npy, for tests/onnx_import.rs; they also seed the onnx_reader fuzz
target.

    python3 scripts/make_onnx_operator_cases.py crates/convnet/tests/golden/onnx_import/operators
    (needs `pip install onnx onnxruntime numpy`)
"""
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(0)


def w(name, *shape):
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def ints(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


def model(name, nodes, inits, out_shape, shape=(1, 2, 6, 6), opset=17):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape[1:]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
    graph = helper.make_graph(nodes, name, [x], [y], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8 if opset <= 17 else 11
    return name, m


N = helper.make_node
cases = [
    model("conv_bn_relu_pool", [
        N("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv"),
        N("BatchNormalization", ["c1", "s", "o", "m", "v"], ["bn"], name="bn"),
        N("Relu", ["bn"], ["r"]),
        N("MaxPool", ["r"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        N("GlobalAveragePool", ["p"], ["g"]),
        N("Flatten", ["g"], ["f"]),
        N("Gemm", ["f", "w2", "b2"], ["y"], transB=1),
    ], [w("w1", 4, 2, 3, 3), w("b1", 4), w("s", 4), w("o", 4), w("m", 4),
        numpy_helper.from_array(np.ones(4, np.float32), "v"), w("w2", 3, 4), w("b2", 3)],
        ("N", 3)),
    model("grouped_dilated_depthwise", [
        N("Conv", ["x", "w1"], ["c1"], group=2, dilations=[2, 2], pads=[2, 2, 2, 2]),
        N("Conv", ["c1", "w2", "b2"], ["c2"], group=2, strides=[2, 2], pads=[1, 1, 1, 1]),
        N("Clip", ["c2", "lo", "hi"], ["y"]),
    ], [w("w1", 4, 1, 3, 3), w("w2", 2, 2, 3, 3), w("b2", 2),
        numpy_helper.from_array(np.array(0, np.float32), "lo"),
        numpy_helper.from_array(np.array(6, np.float32), "hi")], ("N", 2, 3, 3)),
    model("channels_concat_reshape", [
        N("Mul", ["x", "scale"], ["m"]),
        N("Sub", ["m", "shift"], ["s"]),
        N("Sigmoid", ["s"], ["a"]),
        N("Concat", ["a", "x"], ["c"], axis=1),
        N("AveragePool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        N("Reshape", ["p", "shape"], ["r"]),
        N("Softmax", ["r"], ["y"], axis=1),
    ], [w("scale", 1, 2, 1, 1), w("shift", 2, 1, 1), ints("shape", [0, -1])], ("N", 36)),
    model("transpose_nhwc", [
        N("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
        N("ConvTranspose", ["t", "w1", "bt"], ["d"], strides=[2, 2]),
        N("Resize", ["d", "", "scales"], ["u"], mode="nearest",
          coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        N("Slice", ["u", "starts", "ends", "axes"], ["sl"]),
        N("Pad", ["sl", "pads"], ["pd"]),
        N("PRelu", ["pd", "slope"], ["pr"]),
        N("Transpose", ["pr"], ["y"], perm=[0, 2, 3, 1]),
    ], [w("w1", 3, 2, 2, 2), w("bt", 2),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        ints("starts", [1, 1]), ints("ends", [-1, -1]), ints("axes", [2, 3]),
        ints("pads", [0, 0, 1, 1, 0, 0, 1, 1]), w("slope", 2, 1, 1)], ("N", 20, 24, 2),
        shape=(1, 5, 6, 3)),
    model("vector_layernorm", [
        N("Constant", [], ["k"], value=numpy_helper.from_array(
            rng.standard_normal((5, 4)).astype(np.float32))),
        N("MatMul", ["x", "k"], ["mm"]),
        N("LayerNormalization", ["mm", "g", "b"], ["ln"], axis=-1),
        N("Add", ["ln", "ln"], ["sum"]),
        N("Identity", ["sum"], ["y"]),
    ], [w("g", 4), w("b", 4)], ("N", 4), shape=(1, 5)),
    # x·sigmoid(x) with its factors swapped and the sigmoid read again, and ONNX 24's
    # Swish.
    model("sigmoid_products_swish", [
        N("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1]),
        N("Sigmoid", ["c"], ["s"]),
        N("Mul", ["s", "c"], ["m"]),
        N("Add", ["m", "s"], ["a"]),
        N("Swish", ["a"], ["y"]),
    ], [w("w1", 3, 2, 3, 3), w("b1", 3)], ("N", 3, 6, 6), opset=24),
]

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
for name, m in cases:
    import onnxruntime as ort

    onnx.checker.check_model(m, full_check=True)
    (out / f"{name}.onnx").write_bytes(m.SerializeToString())
    dims = [d.dim_value or 2 for d in m.graph.input[0].type.tensor_type.shape.dim]
    x = rng.standard_normal(dims).astype(np.float32)
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x})
    np.save(out / f"{name}_input.npy", x)
    np.save(out / f"{name}_onnxruntime.npy", y)
    print(name, x.shape, "->", y.shape)
