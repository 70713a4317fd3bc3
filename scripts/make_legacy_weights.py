"""Writes weight files in the legacy layout of Keras's ImageNet weights (what
`resnet50_weights_tf_dim_ordering_tf_kernels.h5` and the `*_notop.h5` files are: tf.keras
2's `save_weights` to `.h5`), from random weights, with Keras 3's predictions after it
loads them by name, as a user adapting an application to new classes does.

    pip install tensorflow-cpu tf_keras pillow
    python scripts/make_legacy_weights.py crates/convnet/tests/golden/legacy_weights [APP ...]

APP is one of the names below (default: mobilenet_v2_035, the small committed one;
resnet50 and resnet50_imagenet write 100 MB files, for the ignored tests). For each
`<app>`:
  - `<app>_top5.h5`: the application with a 5-class head, saved by tf.keras 2;
  - `<app>.npz`: `x` (images in [0, 255], 32x32), `features` (Keras 3's `pooling="avg"`
    model without top, the file loaded by name) and `top5` (the 5-class model, the file
    loaded in order), both on `preprocess_input(x)`; `image_scores`, the 5-class
    model's scores for `<app>.png` (40x48, so resized) read as Keras's own ImageNet
    example reads an image: `load_img(target_size=...)`, `img_to_array`,
    `preprocess_input`; `image_35x42`, that image as `load_img` resizes it to 35x42.
`resnet50_imagenet` is the layout of Keras's ImageNet file for ResNet50
(`resnet50_weights_tf_dim_ordering_tf_kernels.h5`: 224x224, 1,000 classes, random
weights here), with `resnet50_imagenet.png` (256x300) and `resnet50_imagenet.npz`:
`top_classes` and `top_scores`, the five best of Keras's predictions for it, best first,
what `decode_predictions(preds, top=5)` lists.
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


def write_image(path, height, width):
    from PIL import Image

    pixels = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def read_image(path, size):
    image = keras.utils.load_img(path, target_size=size)
    return keras.utils.img_to_array(image)[None]


def resnet50_imagenet(out):
    tf_keras.utils.set_random_seed(5)
    legacy = tf_keras.applications.ResNet50(weights=None)
    path = os.path.join(out, "resnet50_weights_tf_dim_ordering_tf_kernels.h5")
    legacy.save_weights(path)
    image = os.path.join(out, "resnet50_imagenet.png")
    write_image(image, 256, 300)
    model = keras.applications.ResNet50(weights=None)
    model.load_weights(path)
    preds = model.predict(
        keras.applications.resnet.preprocess_input(read_image(image, (224, 224))), verbose=0
    )
    top = preds[0].argsort()[-5:][::-1]  # decode_predictions' order
    np.savez(
        os.path.join(out, "resnet50_imagenet.npz"), top_classes=top, top_scores=preds[0][top]
    )
    print("resnet50_imagenet", os.path.getsize(path), flush=True)


def main():
    out, names = sys.argv[1], sys.argv[2:] or ["mobilenet_v2_035"]
    os.makedirs(out, exist_ok=True)
    for name in names:
        if name == "resnet50_imagenet":
            resnet50_imagenet(out)
            continue
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
        image = os.path.join(out, f"{name}.png")
        write_image(image, 40, 48)
        from_image = getattr(keras.applications, module).preprocess_input(read_image(image, (32, 32)))
        np.savez(
            os.path.join(out, f"{name}.npz"),
            x=x,
            features=features.predict(pre, verbose=0),
            top5=top5.predict(pre, verbose=0),
            image_scores=top5.predict(from_image, verbose=0),
            # The image as load_img resizes it by 7/8 (where Pillow's rounding shows).
            image_35x42=read_image(image, (35, 42)),
        )
        print(name, os.path.getsize(path), flush=True)


if __name__ == "__main__":
    main()
