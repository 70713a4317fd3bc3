"""Writes Keras 3 fits of models with weight regularizers, activity regularizers and
constraints (tests/golden/train/penalties): each case's model as Keras saves it before
training (`<name>.keras`, its initial weights inside), and `cases.json` with the
optimizer, the fit's arguments, Keras's history, its evaluate() after training and its
predictions after training.

    pip install tensorflow-cpu
    python scripts/make_penalty_fits.py crates/convnet/tests/golden/train/penalties

Keras adds every trainable weight's regularizer penalty and every activity penalty
(divided by the batch size) to the loss it minimises and reports, in fit and in
evaluate, and projects each constrained weight after every optimizer step.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import keras

L = keras.layers
R = keras.regularizers
C = keras.constraints


def weights_and_constraints():
    keras.utils.set_random_seed(21)
    x = L.Input((8, 8, 2))
    y = L.Conv2D(
        4, 3, padding="same", activation="relu",
        kernel_regularizer=R.L2(0.01), bias_regularizer=R.L1(0.005),
        kernel_constraint=C.MaxNorm(0.6, axis=[0, 1, 2]),
    )(x)
    y = L.BatchNormalization(gamma_regularizer=R.L2(0.001), beta_constraint=C.NonNeg())(y)
    y = L.MaxPooling2D()(y)
    y = L.DepthwiseConv2D(
        3, padding="same", activation="relu",
        depthwise_regularizer=R.L1L2(0.001, 0.01), bias_constraint=C.NonNeg(),
    )(y)
    y = L.SeparableConv2D(
        5, 3, padding="same", activation="relu",
        pointwise_regularizer=R.L2(0.02), depthwise_constraint=C.UnitNorm(axis=[0, 1]),
    )(y)
    y = L.Flatten()(y)
    y = L.Dense(
        8, activation="relu", kernel_constraint=C.MinMaxNorm(0.5, 1.0, rate=0.7),
        kernel_regularizer=R.L1(0.002),
    )(y)
    y = L.Dense(3, activation="softmax", kernel_regularizer=R.L2(0.02))(y)
    return keras.Model(x, y), keras.optimizers.SGD(0.05, momentum=0.9)


def activity():
    keras.utils.set_random_seed(22)
    x = L.Input((8, 8, 2))
    y = L.Conv2D(3, 3, activation="relu", activity_regularizer=R.L2(0.01))(x)
    y = L.Flatten()(y)
    y = L.Dense(6, activation="relu", activity_regularizer=R.L1L2(0.01, 0.02))(y)
    y = L.Dense(3, activation="softmax")(y)
    return keras.Model(x, y), keras.optimizers.Adam(0.01)


def orthogonal():
    keras.utils.set_random_seed(23)
    x = L.Input((8, 8, 2))
    y = L.Flatten()(x)
    y = L.Dense(6, activation="relu", kernel_regularizer=R.OrthogonalRegularizer(0.1))(y)
    y = L.Dense(3, activation="softmax",
                kernel_regularizer=R.OrthogonalRegularizer(0.2, mode="columns"))(y)
    return keras.Model(x, y), keras.optimizers.SGD(0.1)


def nested_activity():
    keras.utils.set_random_seed(24)
    inner = keras.Sequential(
        [keras.Input((8, 8, 2)),
         L.Conv2D(3, 3, activation="relu", activity_regularizer=R.L2(0.02)),
         L.Flatten()],
        name="inner",
    )
    x = L.Input((8, 8, 2))
    y = inner(x)
    y = L.Dense(3, activation="softmax", activity_regularizer=R.L1(0.01))(y)
    return keras.Model(x, y), keras.optimizers.Adam(0.01)


CASES = {
    "weights_and_constraints": (weights_and_constraints, 16, 2),
    "activity": (activity, 12, 2),
    "orthogonal": (orthogonal, 16, 2),
    "nested_activity": (nested_activity, 12, 2),
}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, size=(48, 8, 8, 2)).astype(np.float32)
    y = rng.integers(0, 3, size=(48,)).astype(np.float32)
    np.save(os.path.join(out, "x.npy"), x)
    np.save(os.path.join(out, "y.npy"), y)
    cases = []
    for name, (build, batch_size, epochs) in CASES.items():
        model, optimizer = build()
        model.save(os.path.join(out, f"{name}.keras"))
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        history = model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False,
                            verbose=0)
        evaluated = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
        predictions = model.predict(x, verbose=0)
        np.save(os.path.join(out, f"{name}.predictions.npy"), predictions.astype(np.float32))
        cases.append({
            "name": name,
            "model": f"{name}.keras",
            "optimizer": keras.optimizers.serialize(optimizer),
            "loss": "sparse_categorical_crossentropy",
            "batch_size": batch_size,
            "epochs": epochs,
            "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
            "evaluate": {k: float(v) for k, v in evaluated.items()},
            "predictions": f"{name}.predictions.npy",
        })
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)


if __name__ == "__main__":
    main()
