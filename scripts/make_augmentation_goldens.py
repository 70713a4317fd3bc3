"""Writes the training-mode cases of Keras's augmentation layers
(tests/golden/augmentation/cases.json): for each case, the layer's config, an input
batch, the random draw Keras made for it (one value or pair an image) and Keras's output
for that draw, so that convnet's transform can be checked on Keras's own draws (its
generator is convnet's, so the draws themselves cannot match).

    pip install tensorflow-cpu
    python scripts/make_augmentation_goldens.py crates/convnet/tests/golden/augmentation

The draws, per class:
- RandomFlip: `flip`, whether the image is flipped (Keras's uniform <= 0.5);
- RandomRotation: `angle`, in degrees;
- RandomTranslation: `translation`, (dx, dy) in pixels;
- RandomZoom: `zoom`, (width zoom, height zoom);
- RandomContrast: `contrast`, the factor;
- RandomBrightness: `delta`, added to every value (already scaled by the value range);
- RandomCrop: `crop`, the window's (top, left), one for the batch.
RandomCrop's inference cases (`"draw": null`) are tf.keras 2's (`tf_keras`), the
centred crop to the target's aspect ratio resized to the target: Keras 3.15 returns the
images uncropped there, which disagrees with its own output shape.
Everything is float32, the type Keras's image layers compute in.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import keras

L = keras.layers
rng = np.random.default_rng(2026)


def draws(layer, transformation):
    """The per-image draw of `transformation`, as lists."""
    name = type(layer).__name__
    if name == "RandomFlip":
        return {"flip": np.asarray(transformation["flips"]).reshape(-1).tolist()}
    if name == "RandomRotation":
        return {"angle": np.asarray(transformation["angle"], np.float32).reshape(-1).tolist()}
    if name == "RandomTranslation":
        return {"translation": np.asarray(transformation["translations"], np.float32).tolist()}
    if name == "RandomZoom":
        zooms = np.concatenate(
            [np.asarray(transformation["width_zoom"]), np.asarray(transformation["height_zoom"])],
            axis=1,
        )
        return {"zoom": zooms.astype(np.float32).tolist()}
    if name == "RandomContrast":
        return {"contrast": np.asarray(transformation["contrast_factor"], np.float32).reshape(-1).tolist()}
    if name == "RandomBrightness":
        return {"delta": np.asarray(transformation["rgb_delta"], np.float32).reshape(-1).tolist()}
    if name == "RandomCrop":
        return {"crop": [[int(transformation[0]), int(transformation[1])]]}
    raise ValueError(name)


def case(name, layer, shape=(3, 6, 7, 2), low=0.0, high=1.0):
    x = rng.uniform(low, high, size=shape).astype(np.float32)
    layer.build(shape)
    transformation = layer.get_random_transformation(x, training=True, seed=None)
    y = np.asarray(layer.transform_images(x, transformation, training=True), np.float32)
    return {
        "name": name,
        "layer": {"class_name": type(layer).__name__, "config": layer.get_config()},
        "shape": list(shape),
        "x": x.reshape(-1).tolist(),
        "draw": draws(layer, transformation),
        "y": y.reshape(-1).tolist(),
    }


def crop_inference(name, height, width, shape):
    """tf.keras 2's RandomCrop in inference, on Keras 3's config of the same layer."""
    import tf_keras

    x = rng.uniform(0, 1, size=shape).astype(np.float32)
    y = np.asarray(tf_keras.layers.RandomCrop(height, width)(x, training=False), np.float32)
    layer = L.RandomCrop(height, width)
    return {
        "name": name,
        "layer": {"class_name": "RandomCrop", "config": layer.get_config()},
        "shape": list(shape),
        "x": x.reshape(-1).tolist(),
        "draw": None,
        "y": y.reshape(-1).tolist(),
        "y_shape": list(y.shape),
    }


def cases():
    yield case("flip_horizontal", L.RandomFlip("horizontal", seed=1), shape=(4, 5, 6, 2))
    yield case("flip_vertical", L.RandomFlip("vertical", seed=2), shape=(4, 5, 6, 2))
    yield case("flip_both", L.RandomFlip(seed=3), shape=(4, 5, 6, 2))
    yield case("rotation_reflect", L.RandomRotation(0.5, seed=4))
    yield case("rotation_wrap", L.RandomRotation(0.5, fill_mode="wrap", seed=5))
    yield case(
        "rotation_constant_nearest",
        L.RandomRotation((-0.3, 0.2), fill_mode="constant", fill_value=0.5,
                         interpolation="nearest", seed=6),
    )
    yield case("rotation_nearest_fill", L.RandomRotation(0.4, fill_mode="nearest", seed=7))
    yield case("translation_reflect", L.RandomTranslation(0.9, 0.9, seed=8))
    yield case("translation_wrap", L.RandomTranslation(0.9, (-0.8, 0.6), fill_mode="wrap", seed=9))
    yield case(
        "translation_constant",
        L.RandomTranslation(0.5, 0.5, fill_mode="constant", fill_value=-1.0, seed=10),
    )
    yield case(
        "translation_nearest",
        L.RandomTranslation(0.6, 0.6, fill_mode="nearest", interpolation="nearest", seed=11),
    )
    yield case("zoom_reflect", L.RandomZoom(0.6, seed=12))
    yield case("zoom_both_factors", L.RandomZoom((-0.5, 0.3), (0.2, 0.8), fill_mode="wrap", seed=13))
    yield case("zoom_constant", L.RandomZoom(0.5, fill_mode="constant", seed=14))
    yield case("contrast", L.RandomContrast(0.8, value_range=(0, 1), seed=15))
    yield case("contrast_pair", L.RandomContrast((0.5, 0.9), seed=16), low=0, high=255)
    yield case("brightness", L.RandomBrightness(0.4, value_range=(0, 1), seed=17))
    yield case("brightness_pair", L.RandomBrightness((-0.2, 0.6), seed=18), low=0, high=255)
    crop = case("crop_training", L.RandomCrop(4, 3, seed=19), shape=(2, 7, 6, 2))
    crop["y_shape"] = [2, 4, 3, 2]
    yield crop
    yield crop_inference("crop_inference_wide", 4, 3, (2, 7, 9, 2))
    yield crop_inference("crop_inference_tall", 5, 6, (2, 9, 7, 2))
    yield crop_inference("crop_inference_small", 8, 8, (2, 5, 6, 2))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(list(cases()), f)


if __name__ == "__main__":
    main()
