"""Writes the references for convnet::applications' options: keras.applications models
built by Keras 3 with `weights=None` and arguments other than the corpus's (no top with
avg/max/no pooling, other classes and classifier activations, input shapes left open or
non-square or grey, MobileNet and MobileNetV2 widths, MobileNet's depth multipliers and
dropout), and Keras's `imagenet_utils.preprocess_input` in each mode on a small batch.

    pip install tensorflow-cpu
    python scripts/make_application_options.py crates/convnet/tests/golden/applications/options
    python scripts/make_application_options.py OUT vgg densenet   # only these files

It writes these files in that folder, each with the `keras_version`:
- `resnet.json`, `mobilenet_v2.json`, `vgg.json`, `mobilenet.json`, `densenet.json` and
  `inception.json` (Xception and InceptionV3): the cases, each with its `application`
  (the name `convnet::applications::by_name` takes), `alpha` (MobileNet and
  MobileNetV2; MobileNet's `depth_multiplier` and `dropout` are in `args`), Keras's `args`,
  and what Keras built: the model's `name`, `params`, `input_shape` and `output_shape`
  (null for an open size), `layers` (one line per layer in `model.layers` order: name,
  class and output shape, see `layer_line`) and `tail` (the last three layers exactly as
  config.json holds them: class, config, build_config, inbound nodes);
- `preprocess.json`: `x`, a float32 batch of RGB pixels in [0, 255] (`shape`, flat
  `data`), and for each mode the flat float32 result of
  `keras.applications.imagenet_utils.preprocess_input(x.copy(), mode=mode)`.

Each model is built after `keras.backend.clear_session()`, so layers are named as in a
fresh process (`input_layer`, `global_average_pooling2d`), as convnet names them.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import keras
from keras.src.saving import serialization_lib

A = keras.applications

BUILDERS = {
    "resnet50": A.ResNet50,
    "resnet101": A.ResNet101,
    "resnet152": A.ResNet152,
    "resnet50v2": A.ResNet50V2,
    "resnet101v2": A.ResNet101V2,
    "resnet152v2": A.ResNet152V2,
    "mobilenet_v2": A.MobileNetV2,
    "vgg16": A.VGG16,
    "vgg19": A.VGG19,
    "mobilenet": A.MobileNet,
    "densenet121": A.DenseNet121,
    "densenet169": A.DenseNet169,
    "densenet201": A.DenseNet201,
    "xception": A.Xception,
    "inception_v3": A.InceptionV3,
}

# The references file each application's cases go to.
FAMILY = {
    "resnet50": "resnet",
    "resnet101": "resnet",
    "resnet152": "resnet",
    "resnet50v2": "resnet",
    "resnet101v2": "resnet",
    "resnet152v2": "resnet",
    "mobilenet_v2": "mobilenet_v2",
    "vgg16": "vgg",
    "vgg19": "vgg",
    "mobilenet": "mobilenet",
    "densenet121": "densenet",
    "densenet169": "densenet",
    "densenet201": "densenet",
    "xception": "inception",
    "inception_v3": "inception",
}

# (application, alpha or None, keyword arguments besides weights=None; MobileNet's
# depth_multiplier and dropout go in them)
CASES = [
    ("resnet50", None, dict(include_top=False, pooling="avg", input_shape=(64, 64, 3))),
    ("resnet50", None, dict(include_top=False, pooling="max", input_shape=(32, 32, 3))),
    ("resnet50", None, dict(include_top=False)),
    ("resnet50", None, dict(classes=10, classifier_activation="sigmoid", input_shape=(40, 48, 3))),
    ("resnet50", None, dict()),
    ("resnet50", None, dict(classes=10, input_shape=(32, 32, 1))),
    ("resnet50v2", None, dict(include_top=False, pooling="max")),
    ("resnet50v2", None, dict(classes=10, classifier_activation=None, input_shape=(33, 37, 3))),
    ("mobilenet_v2", 1.0, dict(include_top=False, pooling="avg", input_shape=(64, 64, 3))),
    ("mobilenet_v2", 0.35, dict(include_top=False, pooling="max", input_shape=(96, 96, 3))),
    ("mobilenet_v2", 1.3, dict(classes=10, classifier_activation=None, input_shape=(33, 35, 3))),
    ("mobilenet_v2", 0.5, dict(include_top=False)),
    ("mobilenet_v2", 1.0, dict()),
    ("mobilenet_v2", 0.75, dict(classes=10, input_shape=(32, 32, 1))),
    ("mobilenet_v2", 1.4, dict(include_top=False, pooling="avg", input_shape=(32, 32, 3))),
    ("vgg16", None, dict(include_top=False, pooling="avg", input_shape=(64, 64, 3))),
    ("vgg16", None, dict(include_top=False, pooling="max")),
    ("vgg16", None, dict(include_top=False)),
    ("vgg16", None, dict(classes=10, classifier_activation="sigmoid", input_shape=(32, 48, 3))),
    ("vgg16", None, dict()),
    ("vgg19", None, dict(classes=10, classifier_activation=None, input_shape=(40, 40, 1))),
    ("vgg19", None, dict(include_top=False, pooling="avg", input_shape=(37, 33, 3))),
    ("mobilenet", 1.0, dict()),
    ("mobilenet", 0.25, dict(include_top=False, pooling="avg", input_shape=(64, 64, 3))),
    ("mobilenet", 0.5, dict(depth_multiplier=2, classes=10, classifier_activation=None,
                            input_shape=(33, 35, 3))),
    ("mobilenet", 0.75, dict(include_top=False)),
    ("mobilenet", 1.0, dict(dropout=0.5, classes=10, classifier_activation="sigmoid",
                            input_shape=(128, 128, 3))),
    ("mobilenet", 1.3, dict(include_top=False, pooling="max", input_shape=(32, 32, 3))),
    ("mobilenet", 1.0, dict(depth_multiplier=3, classes=10, input_shape=(32, 32, 1))),
    ("densenet121", None, dict(include_top=False, pooling="avg", input_shape=(64, 64, 3))),
    ("densenet169", None, dict(include_top=False, pooling="max")),
    ("densenet201", None, dict(classes=10, classifier_activation="sigmoid",
                               input_shape=(40, 48, 3))),
    ("densenet121", None, dict(include_top=False)),
    ("densenet121", None, dict()),
    ("densenet121", None, dict(classes=10, input_shape=(32, 32, 1))),
    ("densenet169", None, dict(classes=10, classifier_activation=None, input_shape=(33, 37, 3))),
    ("xception", None, dict(include_top=False, pooling="avg", input_shape=(71, 71, 3))),
    ("xception", None, dict(include_top=False, pooling="max")),
    ("xception", None, dict(classes=10, classifier_activation="sigmoid", input_shape=(80, 90, 3))),
    ("xception", None, dict()),
    ("inception_v3", None, dict(include_top=False, pooling="avg", input_shape=(75, 75, 3))),
    ("inception_v3", None, dict(include_top=False, pooling="max")),
    ("inception_v3", None, dict(include_top=False)),
    ("inception_v3", None, dict(classes=10, classifier_activation=None, input_shape=(80, 99, 3))),
    ("inception_v3", None, dict()),
    ("inception_v3", None, dict(classes=10, input_shape=(75, 75, 1))),
]


def shape(s):
    return None if s is None else [None if d is None else int(d) for d in s]


def layer_line(layer):
    """`name Class sizes`: the layer's name, class and output shape less the batch axis,
    comma-separated (`conv1_conv Conv2D 16,16,64`, `input_layer InputLayer None,None,3`)."""
    sizes = ",".join(str(d) for d in layer.output.shape[1:])
    return f"{layer.name} {layer.__class__.__name__} {sizes}"


def case(application, alpha, kwargs):
    keras.backend.clear_session()
    build = BUILDERS[application]
    extra = {} if alpha is None else {"alpha": alpha}
    model = build(weights=None, **extra, **kwargs)
    config = serialization_lib.serialize_keras_object(model)
    # Through JSON as config.json holds it (tuples as lists).
    config = json.loads(json.dumps(config))
    args = dict(kwargs)
    if "input_shape" in args:
        args["input_shape"] = list(args["input_shape"])
    return {
        "application": application,
        "alpha": alpha,
        "args": args,
        "name": model.name,
        "params": int(model.count_params()),
        "input_shape": shape(model.input_shape),
        "output_shape": shape(model.output_shape),
        "layers": [layer_line(l) for l in model.layers],
        "tail": config["config"]["layers"][-3:],
    }


def preprocess():
    rng = np.random.default_rng(7)
    # Pixels in [0, 255], quarters so that they are exact in float32.
    x = (rng.integers(0, 1021, size=(2, 2, 3, 3)) / 4.0).astype(np.float32)
    out = {"x": {"shape": list(x.shape), "data": [float(v) for v in x.ravel()]}}
    for mode in ("caffe", "tf", "torch"):
        y = keras.applications.imagenet_utils.preprocess_input(x.copy(), mode=mode)
        assert y.dtype == np.float32, y.dtype
        out[mode] = [float(v) for v in np.asarray(y).ravel()]
    return out


def main():
    out = sys.argv[1]
    # Optionally only some files: `resnet`, `vgg`, …, `preprocess`.
    only = set(sys.argv[2:])
    os.makedirs(out, exist_ok=True)
    documents = {}
    for application, alpha, kwargs in CASES:
        family = FAMILY[application]
        if only and family not in only:
            continue
        c = case(application, alpha, kwargs)
        print(application, alpha, kwargs, c["name"], c["params"], flush=True)
        documents.setdefault(family, []).append(c)
    if not only or "preprocess" in only:
        documents["preprocess"] = preprocess()
    for file, content in documents.items():
        with open(os.path.join(out, f"{file}.json"), "w") as f:
            json.dump({"keras_version": keras.__version__, file: content}, f, indent=0)
            f.write("\n")


if __name__ == "__main__":
    main()
