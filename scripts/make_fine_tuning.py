"""Writes Keras 3's transfer-learning recipe on a small base with BatchNormalization
(tests/golden/train/fine_tuning): the model as Keras saves it with its base frozen
(`model.keras`, initial weights inside), then `cases.json` with two phases:
1. the head trained for an epoch with SGD while the base is frozen;
2. the base unfrozen except its first convolution and BatchNormalization, recompiled
   with Adam at 1e-5, trained for another epoch.
For each phase: the layers frozen, the optimizer, Keras's history, the summary's
parameter lines and the predictions after it.

    pip install tensorflow-cpu
    python scripts/make_fine_tuning.py crates/convnet/tests/golden/train/fine_tuning

The base is called as `base(x, training=False)`, as Keras's guide writes it. Keras 3
overrides that argument with fit's `training=True` (keras-team/keras#20285): a frozen
BatchNormalization stays on its moving statistics because it is frozen, and once
unfrozen it trains on batch statistics.
"""

import contextlib
import io
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import keras

L = keras.layers


def summary_lines(model):
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        model.summary(line_length=80)
    return [l for l in text.getvalue().splitlines() if "params:" in l]


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    keras.utils.set_random_seed(31)
    base = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            L.Conv2D(4, 3, name="c1"),
            L.BatchNormalization(name="bn1"),
            L.ReLU(name="relu1"),
            L.Conv2D(6, 3, name="c2"),
            L.BatchNormalization(name="bn2"),
            L.GlobalAveragePooling2D(name="pool"),
        ],
        name="base",
    )
    # Moving statistics away from their initial values, as a pretrained base has.
    rng = np.random.default_rng(7)
    for bn in ("bn1", "bn2"):
        layer = base.get_layer(bn)
        n = layer.moving_mean.shape[0]
        layer.moving_mean.assign(rng.uniform(-0.5, 0.5, n).astype("float32"))
        layer.moving_variance.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
    base.trainable = False
    inputs = keras.Input((8, 8, 2))
    features = base(inputs, training=False)
    outputs = L.Dense(3, activation="softmax", name="head")(features)
    model = keras.Model(inputs, outputs, name="transfer")
    model.save(os.path.join(out, "model.keras"))

    x = rng.uniform(-1, 1, size=(48, 8, 8, 2)).astype(np.float32)
    y = rng.integers(0, 3, size=(48,)).astype(np.float32)
    np.save(os.path.join(out, "x.npy"), x)
    np.save(os.path.join(out, "y.npy"), y)

    phases = []

    def phase(optimizer, frozen):
        summary = summary_lines(model)
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        history = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
        predictions = model.predict(x, verbose=0)
        file = f"phase{len(phases) + 1}.predictions.npy"
        np.save(os.path.join(out, file), predictions.astype(np.float32))
        phases.append({
            "frozen": frozen,
            "summary": summary,
            "optimizer": keras.optimizers.serialize(optimizer),
            "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
            "predictions": file,
        })

    phase(keras.optimizers.SGD(0.1), ["base"])
    base.trainable = True
    base.get_layer("c1").trainable = False
    base.get_layer("bn1").trainable = False
    phase(keras.optimizers.Adam(1e-5), ["base/c1", "base/bn1"])
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump({"batch_size": 16, "loss": "sparse_categorical_crossentropy",
                   "phases": phases}, f, indent=1)


if __name__ == "__main__":
    main()
