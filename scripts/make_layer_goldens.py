"""Adds golden layer cases to tests/golden/layers, computed by Keras 3 in float64, in the
format tests/golden/README.md describes (cases.json plus one .npz a case).

    pip install tensorflow-cpu
    python scripts/make_layer_goldens.py crates/convnet/tests/golden/layers [NAME ...]

Cases already in cases.json under the same name are replaced; the others are kept.
Every input and weight is a multiple of 2^-10 in a small range, so that float32 holds
it exactly.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tensorflow as tf
import keras

keras.config.set_floatx("float64")
L = keras.layers
rng = np.random.default_rng(1234)


def exact(shape, low=-2.0, high=2.0):
    """Odd multiples of 2^-11: exact in float32, and never 0, where TensorFlow's
    gradients of max/min-based functions (celu) count both sides."""
    return (np.floor(rng.uniform(low, high, size=shape) * 1024) + 0.5) / 1024


def distinct(shape):
    """Exact values, no two equal."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n / 2 + 0.5) / 1024).reshape(shape)


def case(name, layer, input_shapes, training=False, inputs=None, weights=None, positive_weights=()):
    """Builds `layer`, sets exact weights (or `weights`), calls it on exact inputs and
    records y, the gradients of sum(y * r) and any non-trainable weights afterwards."""
    xs = inputs or [exact(s) for s in input_shapes]
    layer.build(input_shapes[0] if len(input_shapes) == 1 else input_shapes)
    if weights is None:
        weights = []
        for w in layer.weights:
            shape = tuple(w.shape)
            if w.name in positive_weights:
                weights.append(exact(shape, 0.5, 2.0))
            elif "int" in str(w.dtype):
                weights.append(np.asarray(w.numpy()))
            else:
                weights.append(exact(shape))
    layer.set_weights(weights)
    if hasattr(layer, "finalize_state"):
        # Normalization reads its mean and variance weights only here (Keras calls it
        # after loading a file, not after set_weights).
        layer.finalize_state()
    before = [np.asarray(w.numpy(), np.float64) for w in layer.weights]
    tensors = [tf.constant(x, tf.float64) for x in xs]
    with tf.GradientTape(persistent=True) as tape:
        for t in tensors:
            tape.watch(t)
        y = layer(tensors[0] if len(tensors) == 1 else tensors, training=training)
        # CenterCrop resizes a small image in float32 whatever floatx says.
        y = tf.cast(y, tf.float64)
        r = tf.constant(exact(tuple(y.shape)), tf.float64)
        loss = tf.reduce_sum(y * r)
    arrays = {"y": y.numpy(), "r": r.numpy()}
    for i, (x, t) in enumerate(zip(xs, tensors)):
        arrays[f"x{i}"] = x
        g = tape.gradient(loss, t)  # None for integer indices (Embedding): zeros
        arrays[f"dx{i}"] = np.zeros(x.shape) if g is None else np.float64(g.numpy())
    for i, (w, value) in enumerate(zip(layer.weights, before)):
        arrays[f"w{i}"] = value
        if w.trainable:
            g = tape.gradient(loss, w.value)
            # Embedding's gradient is sparse (IndexedSlices): made dense here.
            arrays[f"dw{i}"] = np.zeros(value.shape) if g is None else np.float64(tf.convert_to_tensor(g).numpy())
        else:
            arrays[f"w{i}_after"] = np.asarray(w.numpy(), np.float64)
    record = {
        "name": name,
        "layer": keras.saving.serialize_keras_object(layer),
        "input_shapes": [list(s) for s in input_shapes],
        "training": training,
        "weights": [
            {"name": w.name, "trainable": w.trainable, "shape": list(w.shape)}
            for w in layer.weights
        ],
        "file": f"{name}.npz",
    }
    return record, arrays


def cases():
    """name -> a function making the case, so that one can be remade alone."""
    out = {}
    for fn in ["hard_silu", "mish", "celu", "log_sigmoid", "hard_tanh", "hard_shrink",
               "soft_shrink", "tanh_shrink", "sparse_plus", "sparse_sigmoid", "squareplus"]:
        out[f"activation_{fn}"] = lambda fn=fn: case(
            f"activation_{fn}", L.Activation(fn), [(2, 5, 6)]
        )
    # LayerNormalization: the last axis, several axes, no centre or scale.
    out["layer_normalization"] = lambda: case(
        "layer_normalization", L.LayerNormalization(epsilon=1e-6), [(2, 3, 4, 5)]
    )
    out["layer_normalization_axes"] = lambda: case(
        "layer_normalization_axes", L.LayerNormalization(axis=[1, 3]), [(2, 3, 4, 5)],
        training=True,
    )
    out["layer_normalization_plain"] = lambda: case(
        "layer_normalization_plain",
        L.LayerNormalization(axis=1, center=False, scale=False),
        [(3, 6, 2)],
    )
    out["layer_normalization_rms"] = lambda: case(
        "layer_normalization_rms", L.LayerNormalization(rms_scaling=True), [(2, 4, 6)]
    )
    # Normalization: mean and variance given, learned by adapt (weights), inverted.
    out["normalization_given"] = lambda: case(
        "normalization_given",
        L.Normalization(mean=[0.5, -0.25, 1.0], variance=[4.0, 0.25, 1.0]),
        [(2, 4, 4, 3)],
    )
    out["normalization_weights"] = lambda: case(
        "normalization_weights", L.Normalization(axis=-1), [(2, 4, 4, 3)],
        positive_weights=("variance",),
    )
    out["normalization_invert"] = lambda: case(
        "normalization_invert",
        L.Normalization(
            axis=(1, 2),
            mean=np.arange(6.0).reshape(3, 2) / 4,
            variance=np.arange(1.0, 7.0).reshape(3, 2),
            invert=True,
        ),
        [(2, 3, 2, 4)],
    )
    out["dropout_noise_shape_infer"] = lambda: case(
        "dropout_noise_shape_infer", L.Dropout(0.2, noise_shape=(None, 1, 1, 3)), [(2, 4, 4, 3)]
    )
    from keras.src.applications.convnext import LayerScale
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

    out["layer_scale"] = lambda: case(
        "layer_scale", LayerScale(1e-6, 5), [(2, 3, 3, 5)]
    )
    out["custom_scale_layer"] = lambda: case(
        "custom_scale_layer", CustomScaleLayer(0.17), [(2, 3, 3, 4), (2, 3, 3, 4)]
    )
    # The 1-D family: strides, dilation, causal padding, groups, depth multipliers.
    single_input = {
        "conv1d": (L.Conv1D(4, 3, strides=2, padding="same", activation="tanh"), (2, 9, 3)),
        "conv1d_causal_dilated": (L.Conv1D(3, 3, padding="causal", dilation_rate=2), (2, 8, 2)),
        "conv1d_groups": (L.Conv1D(4, 2, groups=2, use_bias=False), (2, 6, 4)),
        "separable_conv1d": (L.SeparableConv1D(3, 3, depth_multiplier=2, padding="same"), (2, 7, 2)),
        "depthwise_conv1d": (L.DepthwiseConv1D(3, strides=2, depth_multiplier=2), (2, 9, 3)),
        "conv1d_transpose": (L.Conv1DTranspose(3, 3, strides=2, padding="same"), (2, 5, 2)),
        "conv1d_transpose_output_padding": (
            L.Conv1DTranspose(2, 3, strides=2, output_padding=1), (2, 4, 3)),
        "max_pooling1d": (L.MaxPooling1D(3, strides=2), (2, 9, 3)),
        "average_pooling1d_same": (L.AveragePooling1D(2, padding="same"), (2, 7, 3)),
        "global_max_pooling1d": (L.GlobalMaxPooling1D(), (2, 6, 3)),
        "global_average_pooling1d_keepdims": (L.GlobalAveragePooling1D(keepdims=True), (2, 6, 3)),
        "up_sampling1d": (L.UpSampling1D(3), (2, 4, 3)),
        "zero_padding1d": (L.ZeroPadding1D((1, 2)), (2, 4, 3)),
        "cropping1d": (L.Cropping1D((2, 1)), (2, 7, 3)),
    }
    out["embedding"] = lambda: case(
        "embedding", L.Embedding(7, 3), [(2, 5)],
        inputs=[rng.integers(0, 7, size=(2, 5)).astype("float64")],
    )
    single_input.update({
        "group_normalization": (L.GroupNormalization(groups=2), (2, 3, 3, 4)),
        "group_normalization_instance": (
            L.GroupNormalization(groups=4, center=False, epsilon=1e-5), (2, 3, 2, 4)),
        "group_normalization_sequence": (L.GroupNormalization(groups=3, scale=False), (2, 5, 6)),
        "unit_normalization": (L.UnitNormalization(), (2, 3, 4)),
        "unit_normalization_axes": (L.UnitNormalization(axis=[1, 2]), (2, 3, 2, 4)),
        "permute": (L.Permute((3, 1, 2)), (2, 3, 4, 5)),
        "permute_swap": (L.Permute((2, 1)), (2, 3, 4)),
        "repeat_vector": (L.RepeatVector(3), (2, 4)),
        # Inference: the identity (their training noise is checked in convnet's tests).
        "spatial_dropout1d": (L.SpatialDropout1D(0.3), (2, 5, 3)),
        "spatial_dropout2d": (L.SpatialDropout2D(0.3, seed=4), (2, 3, 3, 2)),
        "gaussian_noise": (L.GaussianNoise(0.2), (2, 3, 4)),
        "gaussian_dropout": (L.GaussianDropout(0.25), (2, 3, 4)),
        "alpha_dropout": (L.AlphaDropout(0.2, noise_shape=(None, 1, 4), seed=3), (2, 3, 4)),
        "up_sampling2d_bilinear": (L.UpSampling2D((2, 3), interpolation="bilinear"), (2, 3, 4, 2)),
        "resizing_bilinear_down": (L.Resizing(4, 5), (2, 7, 9, 2)),
        "resizing_bilinear_up": (L.Resizing(7, 5), (2, 3, 4, 2)),
        "resizing_nearest": (L.Resizing(4, 7, interpolation="nearest"), (2, 6, 5, 2)),
        "resizing_crop_to_aspect_ratio": (L.Resizing(4, 4, crop_to_aspect_ratio=True), (2, 6, 9, 2)),
        "center_crop": (L.CenterCrop(4, 5), (2, 7, 8, 3)),
        "center_crop_smaller_input": (L.CenterCrop(5, 5), (2, 3, 4, 2)),
        # channels_first, as older files saved for GPUs have it: float32, the only type
        # TensorFlow's CPU convolutions take in NCHW (the output is cast to float64).
        "conv2d_channels_first": (
            L.Conv2D(4, 3, strides=2, padding="same", data_format="channels_first", dtype="float32"), (2, 3, 7, 6)),
        "separable_conv2d_channels_first": (
            L.SeparableConv2D(4, 3, depth_multiplier=2, data_format="channels_first", dtype="float32"),
            (2, 2, 6, 5)),  # filters 4: with filters equal to the output width (3), TF on
            # the CPU adds the bias along the width, which the NHWC equivalent does not.
        "conv2d_transpose_channels_first": (
            L.Conv2DTranspose(2, 3, strides=2, data_format="channels_first", dtype="float32"), (2, 3, 3, 4)),
        "max_pooling2d_channels_first": (L.MaxPooling2D(data_format="channels_first", dtype="float32"), (2, 3, 6, 4)),
        "global_average_pooling2d_channels_first": (
            L.GlobalAveragePooling2D(data_format="channels_first", dtype="float32", keepdims=True), (2, 3, 4, 5)),
        "flatten_channels_first": (L.Flatten(data_format="channels_first", dtype="float32"), (2, 3, 2, 4)),
        "up_sampling2d_channels_first": (
            L.UpSampling2D(2, data_format="channels_first", dtype="float32", interpolation="bilinear"), (2, 3, 2, 3)),
        "conv1d_channels_first": (L.Conv1D(3, 2, data_format="channels_first", dtype="float32"), (2, 4, 6)),
        "random_flip": (L.RandomFlip("horizontal"), (2, 4, 4, 3)),
        "random_rotation": (L.RandomRotation(0.1, fill_mode="constant"), (2, 4, 4, 3)),
        "random_translation": (L.RandomTranslation(0.1, (-0.2, 0.3)), (2, 4, 4, 3)),
        "random_zoom": (L.RandomZoom(0.2, interpolation="nearest"), (2, 4, 4, 3)),
        "random_contrast": (L.RandomContrast(0.2), (2, 4, 4, 3)),
        "random_brightness": (L.RandomBrightness((-0.1, 0.2), value_range=(0.0, 1.0)), (2, 4, 4, 3)),
        # The 3-D family: strides, dilation, padding, groups, output_padding.
        "conv3d": (L.Conv3D(4, 3, strides=(1, 2, 1), padding="same", activation="tanh"), (2, 5, 6, 4, 3)),
        "conv3d_valid_dilated": (L.Conv3D(3, (2, 3, 2), dilation_rate=(2, 1, 2)), (2, 5, 5, 6, 2)),
        "conv3d_groups": (L.Conv3D(4, 2, groups=2, use_bias=False), (2, 3, 4, 4, 4)),
        "conv3d_transpose": (L.Conv3DTranspose(3, 3, strides=2, padding="same"), (2, 3, 3, 2, 2)),
        "conv3d_transpose_output_padding": (
            L.Conv3DTranspose(2, (3, 2, 3), strides=(2, 2, 3), output_padding=(1, 0, 2)), (2, 2, 3, 2, 3)),
        "conv3d_channels_first": (
            L.Conv3D(3, 2, data_format="channels_first", dtype="float32"), (2, 2, 4, 3, 5)),
        "average_pooling3d": (L.AveragePooling3D((2, 3, 2), strides=1, dtype="float32"), (2, 3, 5, 4, 2)),
        "average_pooling3d_same": (L.AveragePooling3D(3, strides=2, padding="same", dtype="float32"), (2, 5, 4, 5, 2)),
        "global_max_pooling3d": (L.GlobalMaxPooling3D(), (2, 3, 4, 2, 3)),
        "global_average_pooling3d_keepdims": (L.GlobalAveragePooling3D(keepdims=True), (2, 3, 4, 2, 3)),
        "up_sampling3d": (L.UpSampling3D((2, 1, 3)), (2, 2, 3, 2, 3)),
        "zero_padding3d": (L.ZeroPadding3D(((1, 2), (0, 1), (2, 0))), (2, 2, 3, 2, 3)),
        "cropping3d": (L.Cropping3D(((1, 0), (1, 2), 1)), (2, 4, 5, 4, 2)),
    })
    # Max pooling on distinct values: on a tie TensorFlow's 3-D gradient goes to every
    # tied input (its 2-D one to the first), so ties would test TensorFlow, not the layer.
    for name, layer, shape in [
        ("max_pooling3d", L.MaxPooling3D(dtype="float32"), (2, 4, 5, 4, 3)),
        ("max_pooling3d_same", L.MaxPooling3D((3, 2, 3), strides=(2, 1, 2), padding="same", dtype="float32"), (2, 5, 4, 5, 2)),
        ("max_pooling3d_channels_first", L.MaxPooling3D(data_format="channels_first", dtype="float32"), (2, 3, 4, 4, 2)),
    ]:
        out[name] = lambda name=name, layer=layer, shape=shape: case(
            name, layer, [shape], inputs=[distinct(shape)])
    for name, (layer, shape) in single_input.items():
        out[name] = lambda name=name, layer=layer, shape=shape: case(name, layer, [shape])
    return out


def main():
    out, names = sys.argv[1], sys.argv[2:]
    path = os.path.join(out, "cases.json")
    listing = json.load(open(path))
    makers = cases()
    for name in names or list(makers):
        record, arrays = makers[name]()
        np.savez(os.path.join(out, record["file"]), **arrays)
        listing["cases"] = [c for c in listing["cases"] if c["name"] != name] + [record]
        print(name, flush=True)
    with open(path, "w") as f:
        json.dump(listing, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
