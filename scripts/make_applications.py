"""Writes the keras.applications corpus: every CNN in keras.applications, built by Keras 3
with `weights=None` at a small input size, as the files a Keras user has.

    pip install tensorflow-cpu
    python scripts/make_applications.py crates/convnet/tests/golden/applications [--keras DIR] [NAME ...]

For each application `<name>` it writes `<name>.zip` in the first folder (deflated, small
enough for git), holding:
- `config.json`: the model's config, exactly as Keras writes it into a `.keras` file;
- `summary.txt`: what `model.summary()` prints with standard output not a terminal;
- `x.npy`, a float32 batch, and `y.npy`, Keras's predictions on it once every weight
  holds the value `recipe_weight` gives (below), so that the weights need not be stored.
`applications.json` lists them with the application, input size and parameter count.
With `--keras DIR` it also saves each model as `DIR/<name>.keras` with those weights
(too big for git: hundreds of megabytes together).

The top is Keras's default except `classifier_activation=None`: softmax over 1000 classes
of random weights is nearly uniform and would hide differences in the logits. The
summary is the same either way.

The weight recipe is integer arithmetic, so Rust reproduces it bit for bit
(`tests/applications.rs`): weight `j` (in Keras's order) of the layer named `name` gets
element `i` = u * scale + offset, where u in [-1, 1) comes from a hash of (name, j, i).
"""

import contextlib
import io
import json
import os
import sys
import tempfile
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import keras

A = keras.applications
M32 = 0xFFFFFFFF


def fnv1a(text):
    h = 0x811C9DC5
    for b in text.encode():
        h = ((h ^ b) * 0x01000193) & M32
    return h


def recipe_uniform(name, index, count):
    """count values in [-1, 1): a splitmix-style hash of (name, index, element)."""
    seed = (fnv1a(name) ^ ((index + 1) * 0x9E3779B9)) & M32
    i = np.arange(count, dtype=np.uint64)
    x = (i * np.uint64(0x85EBCA6B) + np.uint64(seed)) & np.uint64(M32)
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7FEB352D)) & np.uint64(M32)
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846CA68B)) & np.uint64(M32)
    x ^= x >> np.uint64(16)
    # 24 bits, exactly representable in float32.
    return ((x >> np.uint64(8)).astype(np.float64) / float(1 << 23) - 1.0).astype(np.float32)


def recipe_weight(layer_name, index, weight_name, shape):
    """The value of a layer's weight: fan-in scaled for kernels, near one for scales and
    variances, small for shifts and means."""
    count = int(np.prod(shape)) if len(shape) else 1
    u = recipe_uniform(layer_name, index, count)
    if weight_name in ("gamma", "moving_variance", "variance"):
        v = np.float32(1.0) + np.float32(0.25) * u
    elif len(shape) >= 2:
        fan_in = int(np.prod(shape[:2])) if weight_name == "depthwise_kernel" else int(np.prod(shape[:-1]))
        v = u * np.float32(np.sqrt(3.0 / fan_in))
    else:
        v = np.float32(0.1) * u
    return v.reshape(shape).astype(np.float32)


def set_recipe_weights(model):
    for layer in model.layers:
        values = []
        for j, w in enumerate(layer.weights):
            if "int" in str(w.dtype):
                values.append(np.asarray(w.numpy()))
            else:
                values.append(recipe_weight(layer.name, j, w.name, tuple(w.shape)))
        if values:
            layer.set_weights(values)
            if hasattr(layer, "finalize_state"):
                # Normalization computes its mean and variance tensors from its
                # weights here, as loading a file does; set_weights alone leaves the
                # adapted ones in use.
                layer.finalize_state()


# name: (constructor, input shape, input range). Sizes are the smallest each application
# accepts (or near it), to keep the corpus quick.
APPS = {
    "vgg16": (A.VGG16, (32, 32, 3), "caffe"),
    "vgg19": (A.VGG19, (32, 32, 3), "caffe"),
    "resnet50": (A.ResNet50, (32, 32, 3), "caffe"),
    "resnet101": (A.ResNet101, (32, 32, 3), "caffe"),
    "resnet152": (A.ResNet152, (32, 32, 3), "caffe"),
    "resnet50v2": (A.ResNet50V2, (32, 32, 3), "tf"),
    "resnet101v2": (A.ResNet101V2, (32, 32, 3), "tf"),
    "resnet152v2": (A.ResNet152V2, (32, 32, 3), "tf"),
    "inception_v3": (A.InceptionV3, (75, 75, 3), "tf"),
    "inception_resnet_v2": (A.InceptionResNetV2, (75, 75, 3), "tf"),
    "xception": (A.Xception, (71, 71, 3), "tf"),
    "mobilenet": (A.MobileNet, (32, 32, 3), "tf"),
    "mobilenet_v2": (A.MobileNetV2, (32, 32, 3), "tf"),
    "mobilenet_v3_small": (A.MobileNetV3Small, (32, 32, 3), "pixels"),
    "mobilenet_v3_large": (A.MobileNetV3Large, (32, 32, 3), "pixels"),
    "densenet121": (A.DenseNet121, (32, 32, 3), "torch"),
    "densenet169": (A.DenseNet169, (32, 32, 3), "torch"),
    "densenet201": (A.DenseNet201, (32, 32, 3), "torch"),
    "nasnet_mobile": (A.NASNetMobile, (32, 32, 3), "tf"),
    **{f"efficientnet_b{i}": (getattr(A, f"EfficientNetB{i}"), (32, 32, 3), "pixels") for i in range(8)},
    **{f"efficientnet_v2_b{i}": (getattr(A, f"EfficientNetV2B{i}"), (32, 32, 3), "pixels") for i in range(4)},
    "efficientnet_v2_s": (A.EfficientNetV2S, (32, 32, 3), "pixels"),
    "convnext_tiny": (A.ConvNeXtTiny, (32, 32, 3), "pixels"),
}


def batch(shape, kind, rng):
    u = rng.uniform(-1.0, 1.0, size=(2, *shape)).astype(np.float32)
    if kind == "pixels":
        return (u * 127.5 + 127.5).astype(np.float32)
    if kind == "caffe":
        return (u * 120.0).astype(np.float32)
    return u


def summary_text(model):
    """model.summary() as it prints when standard output is not a terminal."""
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        model.summary()
    return text.getvalue()


def main():
    args = sys.argv[1:]
    keras_dir = None
    if "--keras" in args:
        k = args.index("--keras")
        keras_dir = args[k + 1]
        del args[k : k + 2]
    out, names = args[0], args[1:] or list(APPS)
    os.makedirs(out, exist_ok=True)
    if keras_dir:
        os.makedirs(keras_dir, exist_ok=True)
    listing_path = os.path.join(out, "applications.json")
    listing = json.load(open(listing_path)) if os.path.exists(listing_path) else {}
    for name in names:
        build, shape, kind = APPS[name]
        keras.utils.set_random_seed(11)
        model = build(weights=None, input_shape=shape, classifier_activation=None)
        set_recipe_weights(model)
        x = batch(shape, kind, np.random.default_rng(len(name)))
        y = model.predict(x, verbose=0)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(keras_dir or tmp, f"{name}.keras")
            model.save(path)
            with zipfile.ZipFile(path) as z:
                config = z.read("config.json")
        arrays = {}
        for key, value in (("x", x), ("y", y.astype(np.float32))):
            buffer = io.BytesIO()
            np.save(buffer, value)
            arrays[f"{key}.npy"] = buffer.getvalue()
        with zipfile.ZipFile(os.path.join(out, f"{name}.zip"), "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("config.json", config)
            z.writestr("summary.txt", summary_text(model))
            for key, value in arrays.items():
                z.writestr(key, value)
        listing[name] = {
            "application": build.__name__,
            "input_shape": list(shape),
            "input": kind,
            "params": int(model.count_params()),
        }
        print(name, model.count_params(), flush=True)
    with open(listing_path, "w") as f:
        json.dump(dict(sorted(listing.items())), f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
