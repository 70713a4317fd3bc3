#!/usr/bin/env python3
"""Seeds the config_json fuzz target's corpus with every model config in the golden files.

    python3 seed_config_json.py [OUT]        (OUT: corpus/config_json)

- the config.json of every .keras file and of every .zip that holds one (programs,
  applications);
- the model_config of every legacy .h5 (tf.keras 2's and Keras 3's dialect), found in the
  file's bytes;
- every layer config of layers/cases.json and augmentation/cases.json, wrapped in a model:
  a Sequential of an InputLayer and the layer, or a Functional of one InputLayer per input
  and the layer for merge layers (several inputs);
- the layer configs applications/options/*.json list ("tail"), wrapped the same way.
"""
import glob
import hashlib
import json
import os
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "..", "crates", "convnet", "tests", "golden")


def sequential(layer, shape):
    layer = json.loads(json.dumps(layer))
    layer["config"].pop("batch_input_shape", None)
    return {
        "class_name": "Sequential",
        "config": {
            "name": "sequential",
            "trainable": True,
            "layers": [
                {
                    "class_name": "InputLayer",
                    "config": {"batch_shape": [None] + list(shape), "dtype": "float32",
                               "sparse": False, "name": "input_layer"},
                },
                layer,
            ],
        },
    }


def functional(layer, shapes):
    layer = json.loads(json.dumps(layer))
    name = layer["config"].get("name", "layer")
    inputs, tensors = [], []
    for k, shape in enumerate(shapes):
        batch_shape = [None] + list(shape)
        inputs.append({
            "class_name": "InputLayer",
            "config": {"batch_shape": batch_shape, "dtype": "float32", "sparse": False,
                       "name": f"input_{k}"},
            "name": f"input_{k}",
            "inbound_nodes": [],
        })
        tensors.append({"class_name": "__keras_tensor__",
                        "config": {"shape": batch_shape, "dtype": "float32",
                                   "keras_history": [f"input_{k}", 0, 0]}})
    layer["name"] = name
    layer["inbound_nodes"] = [{"args": [tensors], "kwargs": {}}]
    return {
        "class_name": "Functional",
        "config": {
            "name": "functional",
            "trainable": True,
            "layers": inputs + [layer],
            "input_layers": [[f"input_{k}", 0, 0] for k in range(len(shapes))],
            "output_layers": [[name, 0, 0]],
        },
    }


def wrapped(layer, shapes):
    if len(shapes) == 1:
        return sequential(layer, shapes[0][1:])
    return functional(layer, [s[1:] for s in shapes])


def configs():
    for path in sorted(glob.glob(os.path.join(GOLDEN, "**", "*.keras"), recursive=True)
                       + glob.glob(os.path.join(GOLDEN, "**", "*.zip"), recursive=True)):
        with zipfile.ZipFile(path) as z:
            if "config.json" in z.namelist():
                yield json.loads(z.read("config.json"))
    for path in sorted(glob.glob(os.path.join(GOLDEN, "**", "*.h5"), recursive=True)):
        data = open(path, "rb").read()
        start = data.find(b'{"class_name"')
        if start >= 0:
            try:
                config, _ = json.JSONDecoder().raw_decode(data[start:].decode("latin-1"))
                yield config
            except ValueError:
                pass
    for case in json.load(open(os.path.join(GOLDEN, "layers", "cases.json")))["cases"]:
        yield wrapped(case["layer"], case["input_shapes"])
    for case in json.load(open(os.path.join(GOLDEN, "augmentation", "cases.json"))):
        yield wrapped(case["layer"], [case["shape"]])
    for path in sorted(glob.glob(os.path.join(GOLDEN, "applications", "options", "*.json"))):
        for family in json.load(open(path)).values():
            if not isinstance(family, list):
                continue
            for app in family:
                for layer in app.get("tail", []):
                    shape = layer.get("build_config", {}).get("input_shape")
                    if shape and all(isinstance(d, (int, type(None))) for d in shape):
                        yield wrapped(layer, [shape])


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus", "config_json")
    os.makedirs(out, exist_ok=True)
    count = 0
    for config in configs():
        data = json.dumps(config).encode()
        name = hashlib.sha1(data).hexdigest()
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        count += 1
    print(f"{count} configs in {out}")


if __name__ == "__main__":
    main()
