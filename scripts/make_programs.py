"""Writes the Keras program corpus: CNN programs written the way keras.io's examples
write them, built by Keras 3, in the format of the applications corpus.

    pip install tensorflow-cpu
    python scripts/make_programs.py crates/convnet/tests/golden/programs [NAME ...]

Each program below is a function that builds its model as the example does (smaller
sizes, so the corpus stays quick). For each, `<name>.zip` holds `config.json` (what
Keras writes into a `.keras` file), `summary.txt`, and `x.npy` / `y.npy` (a float32
batch and Keras's predictions once every weight holds the value of
`make_applications.recipe_weight`). `programs.json` lists them with their source and
the keras.io example each follows.
"""

import inspect
import io
import json
import os
import sys
import tempfile
import textwrap
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_applications import set_recipe_weights, summary_text  # noqa: E402

import numpy as np  # noqa: E402
import keras  # noqa: E402
from keras import layers, regularizers, constraints  # noqa: E402


def mnist_convnet():
    """keras.io/examples/vision/mnist_convnet, with a Normalization layer adapted on
    the data in front."""
    normalize = layers.Normalization()
    normalize.adapt(np.random.default_rng(0).uniform(0, 255, (64, 28, 28, 1)))
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            normalize,
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ]
    )


def cifar_resnet_l2():
    """The Keras CIFAR-10 ResNet v1 (depth 8): he_normal kernels with L2(1e-4)."""

    def resnet_layer(x, filters=16, strides=1, activation="relu", bn=True):
        x = layers.Conv2D(
            filters,
            kernel_size=3,
            strides=strides,
            padding="same",
            kernel_initializer="he_normal",
            kernel_regularizer=regularizers.l2(1e-4),
        )(x)
        if bn:
            x = layers.BatchNormalization()(x)
        if activation is not None:
            x = layers.Activation(activation)(x)
        return x

    inputs = keras.Input(shape=(32, 32, 3))
    filters = 16
    x = resnet_layer(inputs)
    for stack in range(3):
        strides = 2 if stack > 0 else 1
        y = resnet_layer(x, filters, strides)
        y = resnet_layer(y, filters, activation=None)
        if stack > 0:
            x = layers.Conv2D(
                filters,
                1,
                strides=strides,
                padding="same",
                kernel_initializer="he_normal",
                kernel_regularizer=regularizers.l2(1e-4),
            )(x)
        x = layers.Activation("relu")(layers.add([x, y]))
        filters *= 2
    x = layers.AveragePooling2D(pool_size=8)(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10, activation="softmax", kernel_initializer="he_normal")(x)
    return keras.Model(inputs, outputs)


def transfer_efficientnet_b0():
    """keras.io/guides/transfer_learning: a frozen EfficientNetB0 base called with
    training=False, and a new head."""
    base = keras.applications.EfficientNetB0(
        weights=None, include_top=False, input_shape=(32, 32, 3)
    )
    base.trainable = False
    inputs = keras.Input(shape=(32, 32, 3))
    x = base(inputs, training=False)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(1)(x)
    return keras.Model(inputs, outputs)


def mobilenet_v3_small_minimalistic():
    """keras.applications.MobileNetV3Small(minimalistic=True), 10 classes."""
    return keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3),
        alpha=0.75,
        minimalistic=True,
        weights=None,
        classes=10,
        classifier_activation=None,
    )


def convnext_block():
    """A ConvNeXt stem and block (keras.io's ConvNeXt description): patchify stem,
    7x7 depthwise convolution, LayerNormalization, inverted-bottleneck Dense layers with
    gelu, residual."""
    inputs = keras.Input(shape=(32, 32, 3))
    x = layers.Conv2D(32, kernel_size=4, strides=4)(inputs)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    for _ in range(2):
        y = layers.DepthwiseConv2D(kernel_size=7, padding="same")(x)
        y = layers.LayerNormalization(epsilon=1e-6)(y)
        y = layers.Dense(4 * 32)(y)
        y = layers.Activation("gelu")(y)
        y = layers.Dense(32)(y)
        x = layers.Add()([x, y])
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    outputs = layers.Dense(10)(x)
    return keras.Model(inputs, outputs)


def oxford_pets_unet():
    """keras.io/examples/vision/oxford_pets_image_segmentation: the Xception-style
    U-Net, at 32x32 with two stages."""
    inputs = keras.Input(shape=(32, 32, 3))
    x = layers.Conv2D(32, 3, strides=2, padding="same")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    previous = x
    for filters in [64, 128]:
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = layers.Conv2D(filters, 1, strides=2, padding="same")(previous)
        x = layers.add([x, residual])
        previous = x
    for filters in [128, 64, 32]:
        x = layers.Activation("relu")(x)
        x = layers.Conv2DTranspose(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.Conv2DTranspose(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.UpSampling2D(2)(x)
        residual = layers.UpSampling2D(2)(previous)
        residual = layers.Conv2D(filters, 1, padding="same")(residual)
        x = layers.add([x, residual])
        previous = x
    x = layers.Cropping2D(((4, 4), (4, 4)))(x)
    outputs = layers.Conv2D(3, 3, activation="softmax", padding="same")(x)
    return keras.Model(inputs, outputs)


def image_classification_from_scratch():
    """keras.io/examples/vision/image_classification_from_scratch: the augmentation
    block, then the small Xception network (Rescaling in front)."""
    data_augmentation = keras.Sequential(
        [layers.RandomFlip("horizontal"), layers.RandomRotation(0.1)]
    )
    inputs = keras.Input(shape=(32, 32, 3))
    x = data_augmentation(inputs)
    x = layers.Rescaling(1.0 / 255)(x)
    x = layers.Conv2D(32, 3, strides=2, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    previous = x
    for size in [64, 128]:
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = layers.Conv2D(size, 1, strides=2, padding="same")(previous)
        x = layers.add([x, residual])
        previous = x
    x = layers.SeparableConv2D(256, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.25)(x)
    outputs = layers.Dense(1, activation=None)(x)
    return keras.Model(inputs, outputs)


def dropout_maxnorm_cnn():
    """Dropout with max-norm constraints (Srivastava et al., as Keras's constraint
    docs suggest), with the other regularizers and constraints on other layers."""
    return keras.Sequential(
        [
            keras.Input(shape=(16, 16, 3)),
            layers.Conv2D(
                16,
                3,
                kernel_constraint=constraints.MaxNorm(3, axis=[0, 1, 2]),
                bias_constraint=constraints.NonNeg(),
                activity_regularizer=regularizers.L2(1e-5),
            ),
            layers.PReLU(alpha_regularizer=regularizers.L1(1e-4)),
            layers.DepthwiseConv2D(
                3,
                depthwise_regularizer=regularizers.L1L2(l1=1e-5, l2=1e-4),
                depthwise_constraint=constraints.UnitNorm(axis=[0, 1]),
            ),
            layers.BatchNormalization(gamma_constraint=constraints.MinMaxNorm(0.5, 2.0)),
            layers.SeparableConv2D(
                8, 3, pointwise_regularizer=regularizers.OrthogonalRegularizer(0.01)
            ),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(
                10,
                kernel_regularizer="l2",
                kernel_constraint="max_norm",
                bias_regularizer=regularizers.L1(0.01),
            ),
        ]
    )


def timeseries_classification():
    """keras.io/examples/timeseries/timeseries_classification_from_scratch: three
    Conv1D-BatchNormalization-ReLU blocks and global average pooling (FordA: 500 steps,
    here 64)."""
    input_layer = keras.layers.Input((64, 1))
    x = input_layer
    for _ in range(3):
        x = layers.Conv1D(filters=16, kernel_size=3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling1D()(x)
    output_layer = layers.Dense(2, activation="softmax")(x)
    return keras.Model(inputs=input_layer, outputs=output_layer)


def causal_tcn():
    """A WaveNet-style temporal convolution stack: causal Conv1D with dilations 1, 2,
    4, 8, residual adds, separable and depthwise 1-D convolutions, 1-D pooling and
    upsampling."""
    inputs = keras.Input((32, 4))
    x = layers.Conv1D(8, 1)(inputs)
    for rate in (1, 2, 4, 8):
        y = layers.Conv1D(8, 2, padding="causal", dilation_rate=rate, activation="tanh")(x)
        x = layers.add([x, y])
    x = layers.SeparableConv1D(12, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling1D(2)(x)
    x = layers.DepthwiseConv1D(3, depth_multiplier=2, padding="same")(x)
    x = layers.AveragePooling1D(2)(x)
    x = layers.Conv1DTranspose(8, 3, strides=2, padding="same")(x)
    x = layers.UpSampling1D(2)(x)
    x = layers.ZeroPadding1D((1, 0))(x)
    x = layers.Cropping1D((0, 1))(x)
    x = layers.GlobalMaxPooling1D()(x)
    outputs = layers.Dense(3)(x)
    return keras.Model(inputs, outputs)


def text_classification():
    """keras.io/examples/nlp/text_classification_from_scratch: Embedding, then two
    strided Conv1D layers and global max pooling (sequences of 500 tokens from a
    vocabulary of 20000, here 64 from 1000)."""
    inputs = keras.Input(shape=(64,), dtype="int64")
    x = layers.Embedding(1000, 32)(inputs)
    x = layers.Dropout(0.5)(x)
    x = layers.Conv1D(32, 7, padding="valid", activation="relu", strides=3)(x)
    x = layers.Conv1D(32, 7, padding="valid", activation="relu", strides=3)(x)
    x = layers.GlobalMaxPooling1D()(x)
    x = layers.Dense(32, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    predictions = layers.Dense(1, activation="sigmoid", name="predictions")(x)
    return keras.Model(inputs, predictions)


def deeplab_v3_plus():
    """keras.io/examples/vision/deeplabv3_plus: a ResNet50 backbone, dilated spatial
    pyramid pooling and bilinear upsampling (at 64x64 with 32 filters; `ops.nn.relu` is
    written as the ReLU layer)."""

    def convolution_block(block_input, num_filters=32, kernel_size=3, dilation_rate=1, use_bias=False):
        x = layers.Conv2D(
            num_filters,
            kernel_size=kernel_size,
            dilation_rate=dilation_rate,
            padding="same",
            use_bias=use_bias,
            kernel_initializer=keras.initializers.HeNormal(),
        )(block_input)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x)

    def dilated_spatial_pyramid_pooling(dspp_input):
        dims = dspp_input.shape
        x = layers.AveragePooling2D(pool_size=(dims[-3], dims[-2]))(dspp_input)
        x = convolution_block(x, kernel_size=1, use_bias=True)
        out_pool = layers.UpSampling2D(
            size=(dims[-3] // x.shape[1], dims[-2] // x.shape[2]),
            interpolation="bilinear",
        )(x)
        out_1 = convolution_block(dspp_input, kernel_size=1, dilation_rate=1)
        out_6 = convolution_block(dspp_input, kernel_size=3, dilation_rate=6)
        out_12 = convolution_block(dspp_input, kernel_size=3, dilation_rate=12)
        out_18 = convolution_block(dspp_input, kernel_size=3, dilation_rate=18)
        x = layers.Concatenate(axis=-1)([out_pool, out_1, out_6, out_12, out_18])
        return convolution_block(x, kernel_size=1)

    image_size, num_classes = 64, 3
    model_input = keras.Input(shape=(image_size, image_size, 3))
    resnet50 = keras.applications.ResNet50(
        weights=None, include_top=False, input_tensor=model_input
    )
    x = resnet50.get_layer("conv4_block6_2_relu").output
    x = dilated_spatial_pyramid_pooling(x)
    input_a = layers.UpSampling2D(
        size=(image_size // 4 // x.shape[1], image_size // 4 // x.shape[2]),
        interpolation="bilinear",
    )(x)
    input_b = resnet50.get_layer("conv2_block3_2_relu").output
    input_b = convolution_block(input_b, num_filters=12, kernel_size=1)
    x = layers.Concatenate(axis=-1)([input_a, input_b])
    x = convolution_block(x)
    x = convolution_block(x)
    x = layers.UpSampling2D(
        size=(image_size // x.shape[1], image_size // x.shape[2]),
        interpolation="bilinear",
    )(x)
    model_output = layers.Conv2D(num_classes, kernel_size=(1, 1), padding="same")(x)
    return keras.Model(inputs=model_input, outputs=model_output)


def preprocessing_pipeline():
    """Keras's preprocessing layers in front of a small CNN: Resizing with
    crop_to_aspect_ratio, CenterCrop, Rescaling, then GroupNormalization, UnitNormalization,
    SpatialDropout2D and GaussianNoise, Permute and RepeatVector."""
    inputs = keras.Input(shape=(40, 48, 3))
    x = layers.Resizing(36, 36, crop_to_aspect_ratio=True)(inputs)
    x = layers.CenterCrop(32, 32)(x)
    x = layers.Rescaling(1.0 / 255)(x)
    x = layers.Conv2D(16, 3, padding="same")(x)
    x = layers.GroupNormalization(groups=4)(x)
    x = layers.Activation("swish")(x)
    x = layers.SpatialDropout2D(0.1)(x)
    x = layers.GaussianNoise(0.1)(x)
    x = layers.MaxPooling2D(4)(x)
    x = layers.Permute((2, 1, 3))(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.UnitNormalization()(x)
    x = layers.RepeatVector(4)(x)
    x = layers.Conv1D(8, 2)(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(5)(x)
    return keras.Model(inputs, outputs)


# name: (builder, keras.io example or Keras source it follows)
def ct_scan_3d_cnn():
    """keras.io/examples/vision/3D_image_classification: four Conv3D / MaxPool3D /
    BatchNormalization stages on a CT volume, global average pooling, a sigmoid head
    (48x48x48 volumes instead of 128x128x64), plus a Conv3DTranspose and 3-D padding
    and cropping side branch as a segmentation decoder would have them."""
    inputs = keras.Input((48, 48, 48, 1))
    x = layers.Conv3D(filters=16, kernel_size=3, activation="relu")(inputs)
    x = layers.MaxPool3D(pool_size=2)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Conv3D(filters=16, kernel_size=3, activation="relu")(x)
    x = layers.MaxPool3D(pool_size=2)(x)
    x = layers.BatchNormalization()(x)
    skip = x
    x = layers.Conv3D(filters=32, kernel_size=3, activation="relu")(x)
    x = layers.MaxPool3D(pool_size=2)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Conv3D(filters=64, kernel_size=3, activation="relu")(x)
    x = layers.MaxPool3D(pool_size=2)(x)
    x = layers.BatchNormalization()(x)
    x = layers.GlobalAveragePooling3D()(x)
    up = layers.Conv3DTranspose(8, 3, strides=2, padding="same")(skip)
    up = layers.ZeroPadding3D(1)(up)
    up = layers.Cropping3D(((2, 0), (1, 1), (0, 2)))(up)
    up = layers.UpSampling3D(2)(layers.AveragePooling3D(4)(up))
    up = layers.GlobalMaxPooling3D()(up)
    x = layers.Concatenate()([x, up])
    x = layers.Dense(units=64, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(units=1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="3dcnn")


PROGRAMS = {
    "mnist_convnet": (mnist_convnet, "keras.io/examples/vision/mnist_convnet"),
    "cifar_resnet_l2": (cifar_resnet_l2, "keras-team/keras examples/cifar10_resnet.py"),
    "transfer_efficientnet_b0": (transfer_efficientnet_b0, "keras.io/guides/transfer_learning"),
    "mobilenet_v3_small_minimalistic": (mobilenet_v3_small_minimalistic, "keras.applications"),
    "convnext_block": (convnext_block, "keras.applications.convnext"),
    "oxford_pets_unet": (oxford_pets_unet, "keras.io/examples/vision/oxford_pets_image_segmentation"),
    "image_classification_from_scratch": (
        image_classification_from_scratch,
        "keras.io/examples/vision/image_classification_from_scratch",
    ),
    "dropout_maxnorm_cnn": (dropout_maxnorm_cnn, "keras.io/api/layers/constraints"),
    "timeseries_classification": (
        timeseries_classification,
        "keras.io/examples/timeseries/timeseries_classification_from_scratch",
    ),
    "text_classification": (
        text_classification, "keras.io/examples/nlp/text_classification_from_scratch"),
    "deeplab_v3_plus": (deeplab_v3_plus, "keras.io/examples/vision/deeplabv3_plus"),
    "preprocessing_pipeline": (preprocessing_pipeline, "keras.io/guides/preprocessing_layers"),
    "ct_scan_3d_cnn": (ct_scan_3d_cnn, "keras.io/examples/vision/3D_image_classification"),
    "causal_tcn": (causal_tcn, "WaveNet (van den Oord et al.), keras.layers.Conv1D docs"),
}


def main():
    out, names = sys.argv[1], sys.argv[2:] or list(PROGRAMS)
    os.makedirs(out, exist_ok=True)
    listing_path = os.path.join(out, "programs.json")
    listing = json.load(open(listing_path)) if os.path.exists(listing_path) else {}
    for name in names:
        build, follows = PROGRAMS[name]
        keras.utils.set_random_seed(11)
        model = build()
        set_recipe_weights(model)
        shape = tuple(model.inputs[0].shape[1:])
        data = np.random.default_rng(len(name))
        if "int" in str(model.inputs[0].dtype):
            # Token indices, below the first Embedding's vocabulary; stored as float32
            # (exact), the form convnet reads them in.
            vocabulary = next(l.input_dim for l in model.layers if hasattr(l, "input_dim"))
            x = data.integers(0, vocabulary, (2, *shape))
            y = model.predict(x, verbose=0)
            x = x.astype(np.float32)
        else:
            x = data.uniform(-1, 1, (2, *shape)).astype(np.float32)
            if len(shape) == 4:
                # Volumes in sixteenths, so that the stored batch compresses.
                x = np.round(x * 16) / 16
            y = model.predict(x, verbose=0)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"{name}.keras")
            model.save(path)
            with zipfile.ZipFile(path) as z:
                config = z.read("config.json")
        with zipfile.ZipFile(os.path.join(out, f"{name}.zip"), "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("config.json", config)
            z.writestr("summary.txt", summary_text(model))
            for key, value in (("x", x), ("y", y.astype(np.float32))):
                buffer = io.BytesIO()
                np.save(buffer, value)
                z.writestr(f"{key}.npy", buffer.getvalue())
        listing[name] = {
            "follows": follows,
            "source": textwrap.dedent(inspect.getsource(build)),
            "params": int(model.count_params()),
        }
        print(name, model.count_params(), flush=True)
    with open(listing_path, "w") as f:
        json.dump(dict(sorted(listing.items())), f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
