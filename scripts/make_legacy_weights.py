"""Writes weight files in the legacy layout of Keras's ImageNet weights (what
`resnet50_weights_tf_dim_ordering_tf_kernels.h5` and the `*_notop.h5` files are: tf.keras
2's `save_weights` to `.h5`), from random weights, with Keras 3's predictions after it
loads them by name, as a user adapting an application to new classes does.

    pip install tensorflow-cpu tf_keras
    python scripts/make_legacy_weights.py crates/convnet/tests/golden/legacy_weights [APP ...]

APP is one of the names below (default: mobilenet_v2_035, the small committed one;
resnet50 writes a 100 MB file, for the ignored test). For each `<app>`:
  - `<app>_top5.h5`: the application with a 5-class head, saved by tf.keras 2;
  - `<app>.npz`: `x` (images in [0, 255], 32x32), `features` (Keras 3's `pooling="avg"`
    model without top, the file loaded by name) and `top5` (the 5-class model, the file
    loaded in order), both on `preprocess_input(x)`.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tf_keras
import keras

APPS = {
    "mobilenet_v2_035": ("MobileNetV2", "mobilenet_v2", {"alpha": 0.35}),
    "resnet50": ("ResNet50", "resnet", {}),
}


def main():
    out, names = sys.argv[1], sys.argv[2:] or ["mobilenet_v2_035"]
    os.makedirs(out, exist_ok=True)
    for name in names:
        cls, module, kwargs = APPS[name]
        tf_keras.utils.set_random_seed(5)
        legacy = getattr(tf_keras.applications, cls)(
            weights=None, input_shape=(32, 32, 3), classes=5, **kwargs
        )
        # Random moving statistics too, so that loading them is checked.
        for layer in legacy.layers:
            if isinstance(layer, tf_keras.layers.BatchNormalization):
                mean, var = layer.moving_mean, layer.moving_variance
                rng = np.random.default_rng(len(layer.name))
                mean.assign(rng.normal(0, 0.1, mean.shape))
                var.assign(rng.uniform(0.5, 1.5, var.shape))
        path = os.path.join(out, f"{name}_top5.h5")
        legacy.save_weights(path)

        x = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
        pre = getattr(keras.applications, module).preprocess_input(x.copy())
        features = getattr(keras.applications, cls)(
            weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 3), **kwargs
        )
        features.load_weights(path, by_name=True, skip_mismatch=True)
        top5 = getattr(keras.applications, cls)(
            weights=None, input_shape=(32, 32, 3), classes=5, **kwargs
        )
        top5.load_weights(path)
        np.savez(
            os.path.join(out, f"{name}.npz"),
            x=x,
            features=features.predict(pre, verbose=0),
            top5=top5.predict(pre, verbose=0),
        )
        print(name, os.path.getsize(path), flush=True)


if __name__ == "__main__":
    main()
