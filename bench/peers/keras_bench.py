"""The comparison workloads in Keras 3 on TensorFlow (channels_last, f32, the same
thread count as convnet), with or without XLA (`--jit`), printed as JSON lines like
`convnet bench --workload ... --json`.

    python bench/peers/keras_bench.py W2 [--jit] [--threads 2] [--json results.jsonl]

Training workloads time the second of two epochs (`model.fit`, data in memory, compiled
with `jit_compile`); the others time a `tf.function(jit_compile=...)` call, as Keras's
own train and predict steps run. Run through bench/compare.py, which alternates it with
convnet, PyTorch and ONNX Runtime."""

import argparse
import json
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from common import fashion_mnist_dir, median_ms, read_idx  # noqa: E402

WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10", "W11"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("workload", choices=WORKLOADS)
    p.add_argument("--jit", action="store_true", help="compile with XLA (jit_compile=True)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json")
    a = p.parse_args()

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    import keras
    from keras import layers

    rng = np.random.default_rng(1)
    keras.utils.set_random_seed(1)

    def layer(name, shape, make):
        """Forward (inference) and forward+backward (input and weight gradients)."""
        x = tf.constant(rng.random(shape, dtype=np.float32))
        lay = make()
        lay.build(shape)
        forward = tf.function(lambda: lay(x), jit_compile=a.jit)
        dy = forward()

        @tf.function(jit_compile=a.jit)
        def both():
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = lay(x)
            return tape.gradient(y, [x] + lay.trainable_variables, output_gradients=dy)

        return [(f"{name} forward", median_ms(lambda: forward().numpy())),
                (f"{name} forward+backward", median_ms(lambda: [g.numpy() for g in both()]))]

    def inference(name, model, batch):
        shape = (batch,) + tuple(model.input_shape[1:])
        x = tf.constant(rng.random(shape, dtype=np.float32))
        f = tf.function(lambda: model(x, training=False), jit_compile=a.jit)
        return [(f"{name} inference, batch {batch}", median_ms(lambda: f().numpy()))]

    def fashion_mnist():
        d = fashion_mnist_dir()
        x = read_idx(os.path.join(d, "train-images-idx3-ubyte.gz")).astype(np.float32)[..., None] / 255.0
        y = read_idx(os.path.join(d, "train-labels-idx1-ubyte.gz")).astype(np.int64)
        return x, y

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.last_ms = (time.perf_counter() - self.start) * 1e3

    def steady_epoch(name, model):
        """The second of two epochs (batch 128, Adam), the data in memory."""
        x, y = fashion_mnist()
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], jit_compile=a.jit)
        times = EpochTimes()
        model.fit(x, y, batch_size=128, epochs=2, verbose=0, callbacks=[times])
        return [(name, times.last_ms)]

    def fmnist_cnn():
        return keras.Sequential([
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ])

    def fmnist_deep():
        """zoo::fmnist_deep, with convnet's augmentation (flips, 2-pixel shifts) as
        Keras's augmentation layers in front."""
        items = [keras.Input((28, 28, 1)), layers.RandomFlip("horizontal"),
                 layers.RandomTranslation(2 / 28, 2 / 28, fill_mode="constant")]
        for filters in (32, 64):
            for _ in range(2):
                items += [layers.Conv2D(filters, 3, padding="same", use_bias=False),
                          layers.BatchNormalization(), layers.Activation("relu")]
            items += [layers.MaxPooling2D(2), layers.Dropout(0.25)]
        items += [layers.Flatten(), layers.Dense(256, use_bias=False), layers.BatchNormalization(),
                  layers.Activation("relu"), layers.Dropout(0.5), layers.Dense(10, activation="softmax")]
        return keras.Sequential(items)

    def inception():
        x0 = keras.Input((224, 224, 3))
        branches = [layers.Conv2D(64, k, padding="same", activation="relu")(x0) for k in (1, 3, 5)]
        return keras.Model(x0, layers.Concatenate()(branches))

    def mobilenet():
        x0 = keras.Input((224, 224, 3))
        x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(x0)
        x = layers.ReLU(max_value=6.0)(layers.BatchNormalization()(x))
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        x = layers.BatchNormalization()(layers.Conv2D(24, 1, use_bias=False)(x))
        x = layers.SeparableConv2D(32, 3, strides=2, padding="same", activation="relu")(x)
        x = layers.Dropout(0.2)(layers.GlobalAveragePooling2D()(x))
        return keras.Model(x0, layers.Dense(10, activation="softmax")(x))

    def application(name):
        return getattr(keras.applications, name)(weights=None)

    def resnet50_step():
        """W10: one SGD train step of keras.applications.ResNet50 at batch 16."""
        model = application("ResNet50")
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy",
                      jit_compile=a.jit)
        x = rng.random((16, 224, 224, 3), dtype=np.float32)
        y = rng.integers(0, 1000, 16)
        return [("W10 ResNet50 224x224 SGD training step, batch 16", median_ms(lambda: model.train_on_batch(x, y)))]

    workloads = {
        "W1": lambda: steady_epoch("W1 fmnist_cnn epoch", fmnist_cnn()),
        "W2": lambda: layer("W2 conv3x3 64->64 56x56 b8", (8, 56, 56, 64), lambda: layers.Conv2D(64, 3, padding="same")),
        "W3": lambda: layer("W3 conv1x1 64->256 56x56 b8", (8, 56, 56, 64), lambda: layers.Conv2D(256, 1)),
        "W4": lambda: layer("W4 depthwise3x3 32ch 112x112 b8", (8, 112, 112, 32),
                            lambda: layers.DepthwiseConv2D(3, padding="same")),
        "W5": lambda: inference("W5 seed inception 224x224x3 b4", inception(), 4),
        "W6": lambda: inference("W6 mobilenet block 224x224x3", mobilenet(), 1),
        "W7": lambda: inference("W7 ResNet50 224x224", application("ResNet50"), 1)
        + inference("W7 ResNet50 224x224", application("ResNet50"), 16),
        "W8": lambda: inference("W8 MobileNetV2 224x224", application("MobileNetV2"), 1),
        "W9": lambda: inference("W9 EfficientNetB0 224x224", application("EfficientNetB0"), 1),
        "W10": resnet50_step,
        "W11": lambda: steady_epoch("W11 fmnist_deep epoch", fmnist_deep()),
    }
    results = workloads[a.workload]()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    config = "jit_compile" if a.jit else "graph"
    lines = []
    for name, ms in results:
        print(f"{name:<56} {ms:>10.2f} ms")
        lines.append(json.dumps({"engine": "keras", "config": config,
                                 "version": f"keras {keras.__version__}, tensorflow {tf.__version__}",
                                 "name": name, "ms": ms, "threads": a.threads, "peak_mb": peak_mb}))
    print(f"peak memory: {peak_mb:.0f} MiB")
    if a.json:
        with open(a.json, "a") as f:
            f.write("".join(l + "\n" for l in lines))


if __name__ == "__main__":
    main()
