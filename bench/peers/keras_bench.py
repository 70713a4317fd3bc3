"""The comparison workloads W1-W6 in Keras 3 on TensorFlow (channels_last, f32, the same
thread count as convnet), printed as JSON lines like `convnet bench --workload ... --json`.

    python bench/peers/keras_bench.py W2 [--threads 2] [--json results.jsonl]

Run through bench/compare.py, which alternates it with convnet and PyTorch."""

import argparse
import json
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from common import fashion_mnist_dir, median_ms, read_idx  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("workload", choices=["W1", "W2", "W3", "W4", "W5", "W6"])
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

    def layer(name, shape, make):
        """Forward (inference) and forward+backward (input and weight gradients), each a
        compiled tf.function as Keras's own train step is."""
        x = tf.constant(rng.random(shape, dtype=np.float32))
        lay = make()
        lay.build(shape)
        forward = tf.function(lambda: lay(x), jit_compile=False)
        dy = forward()

        @tf.function
        def both():
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = lay(x)
            return tape.gradient(y, [x] + lay.trainable_variables, output_gradients=dy)

        return [(f"{name} forward", median_ms(lambda: forward().numpy())),
                (f"{name} forward+backward", median_ms(lambda: [g.numpy() for g in both()]))]

    def inference(name, model, shape):
        x = tf.constant(rng.random(shape, dtype=np.float32))
        f = tf.function(lambda: model(x, training=False))
        return [(name, median_ms(lambda: f().numpy()))]

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

    def w1():
        start = time.perf_counter()
        d = fashion_mnist_dir()
        x = read_idx(os.path.join(d, "train-images-idx3-ubyte.gz")).astype(np.float32)[..., None] / 255.0
        y = read_idx(os.path.join(d, "train-labels-idx1-ubyte.gz")).astype(np.int64)
        keras.utils.set_random_seed(1)
        model = fmnist_cnn()
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, y, batch_size=128, epochs=1, verbose=0)
        return [("W1 fmnist_cnn epoch", (time.perf_counter() - start) * 1e3)]

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

    workloads = {
        "W1": w1,
        "W2": lambda: layer("W2 conv3x3 64->64 56x56 b8", (8, 56, 56, 64), lambda: layers.Conv2D(64, 3, padding="same")),
        "W3": lambda: layer("W3 conv1x1 64->256 56x56 b8", (8, 56, 56, 64), lambda: layers.Conv2D(256, 1)),
        "W4": lambda: layer("W4 depthwise3x3 32ch 112x112 b8", (8, 112, 112, 32), lambda: layers.DepthwiseConv2D(3, padding="same")),
        "W5": lambda: inference("W5 seed inception 224x224x3 b4 inference", inception(), (4, 224, 224, 3)),
        "W6": lambda: inference("W6 mobilenet block 224x224x3 b1 latency", mobilenet(), (1, 224, 224, 3)),
    }
    results = workloads[a.workload]()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = []
    for name, ms in results:
        print(f"{name:<48} {ms:>10.2f} ms")
        lines.append(json.dumps({"engine": "keras", "version": f"keras {keras.__version__}, tensorflow {tf.__version__}",
                                 "name": name, "ms": ms, "threads": a.threads, "peak_mb": peak_mb}))
    print(f"peak memory: {peak_mb:.0f} MiB")
    if a.json:
        with open(a.json, "a") as f:
            f.write("".join(l + "\n" for l in lines))


if __name__ == "__main__":
    main()
