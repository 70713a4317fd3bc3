"""Writes the tf.keras 2 corpus: legacy .h5 files saved by TensorFlow 2's Keras (the
`tf_keras` package), the format most existing Keras CNN files are in, with a float32
batch and tf.keras's predictions on it.

    pip install tensorflow-cpu tf_keras
    python scripts/make_tf_keras_corpus.py crates/convnet/tests/golden/tf_keras

Each model `<name>` gives `<name>.h5` and `<name>.npz` (`x`: inputs, `y`: predictions);
`corpus.json` lists them with whether they are compiled. `regularized` has every
regularizer and constraint, in tf.keras 2's config form.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tf_keras as keras

out = sys.argv[1] if len(sys.argv) > 1 else "tf_keras"
os.makedirs(out, exist_ok=True)
keras.utils.set_random_seed(7)
L = keras.layers


def sequential_cnn():
    return keras.Sequential([
        L.InputLayer(input_shape=(12, 12, 1)),
        L.Conv2D(4, 3, activation="relu"),
        L.MaxPooling2D(),
        L.Flatten(),
        L.Dense(3, activation="softmax"),
    ], name="sequential_cnn")


def functional_branches():
    x = keras.Input((10, 10, 3))
    a = L.Conv2D(4, 1, padding="same", activation="relu")(x)
    b = L.Conv2D(4, 3, padding="same", activation="relu")(x)
    y = L.Concatenate()([a, b])
    y = L.BatchNormalization()(y)
    y = L.GlobalAveragePooling2D()(y)
    y = L.Dense(2)(y)
    return keras.Model(x, y, name="functional_branches")


def separable_depthwise():
    x = keras.Input((9, 9, 4))
    y = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)
    y = L.ReLU(6.0)(y)
    y = L.SeparableConv2D(5, 3, strides=2, activation="relu")(y)
    y = L.LeakyReLU(alpha=0.1)(y)
    y = L.Conv2DTranspose(3, 2, strides=2)(y)
    y = L.ZeroPadding2D(1)(y)
    y = L.AveragePooling2D()(y)
    y = L.Flatten()(y)
    y = L.Dropout(0.3)(y)
    y = L.Dense(2, activation="sigmoid")(y)
    return keras.Model(x, y, name="separable_depthwise")


def mobilenet_v2():
    return keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=5)


def regularized():
    R, C = keras.regularizers, keras.constraints
    x = keras.Input((10, 10, 3))
    y = L.Conv2D(4, 3, kernel_regularizer=R.l2(5e-4), bias_regularizer=R.l1(1e-3),
                 activity_regularizer=R.l2(1e-5), kernel_constraint=C.max_norm(3))(x)
    y = L.BatchNormalization(gamma_regularizer="l2", beta_constraint=C.non_neg())(y)
    y = L.DepthwiseConv2D(3, depthwise_constraint=C.unit_norm(axis=[0, 1]),
                          depthwise_regularizer=R.l1_l2(1e-5, 1e-4))(y)
    y = L.Flatten()(y)
    y = L.Dense(2, kernel_regularizer=R.L1L2(l2=1e-4),
                kernel_constraint=C.min_max_norm(0.5, 2.0, rate=0.5))(y)
    return keras.Model(x, y, name="regularized")


def channels_first():
    x = keras.Input((3, 12, 10))
    y = L.Conv2D(4, 3, padding="same", activation="relu", data_format="channels_first")(x)
    y = L.BatchNormalization(axis=1)(y)
    y = L.MaxPooling2D(data_format="channels_first")(y)
    y = L.DepthwiseConv2D(3, data_format="channels_first")(y)
    y = L.Flatten(data_format="channels_first")(y)
    y = L.Dense(3)(y)
    return keras.Model(x, y, name="channels_first")


MODELS = [
    ("sequential_cnn", sequential_cnn, None),
    ("sequential_cnn_compiled", sequential_cnn, ("adam", "sparse_categorical_crossentropy", ["accuracy"])),
    ("functional_branches", functional_branches, ("sgd", "mse", [])),
    ("separable_depthwise", separable_depthwise, None),
    ("mobilenet_v2", mobilenet_v2, ("rmsprop", "categorical_crossentropy", ["accuracy"])),
    ("regularized", regularized, ("sgd", "mse", [])),
    ("channels_first", channels_first, None),
]

corpus = []
for name, build, compile_args in MODELS:
    model = build()
    if compile_args:
        optimizer, loss, metrics = compile_args
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    shape = (2,) + tuple(model.input_shape[1:])
    x = np.random.default_rng(len(corpus)).uniform(-1, 1, shape).astype("float32")
    y = model.predict(x, verbose=0)
    model.save(os.path.join(out, name + ".h5"))
    np.savez(os.path.join(out, name + ".npz"), x=x, y=y)
    corpus.append({"name": name, "compiled": bool(compile_args)})
with open(os.path.join(out, "corpus.json"), "w") as f:
    json.dump(corpus, f, indent=1)
print("wrote", len(corpus), "models to", out)
