# How nested_*.keras were made (Keras 3.15.1, TensorFlow 2.21 backend): a Sequential
# feature extractor used as a layer of a functional model and of a Sequential.
import contextlib, keras, numpy as np
from keras import layers, models, Input
keras.utils.set_random_seed(1)
base = models.Sequential([Input((8, 8, 2)), layers.Conv2D(4, 3, activation="relu"), layers.BatchNormalization()], name="features")
x0 = Input((8, 8, 2))
y = layers.Dense(3, activation="softmax")(layers.Flatten()(base(x0)))
model = models.Model(x0, y, name="outer")
x = np.random.rand(2, 8, 8, 2).astype("float32")
model.save("nested_functional.keras"); np.save("nested_functional.input0.npy", x)
np.save("nested_functional.output0.npy", model.predict(x, verbose=0))
seq = models.Sequential([Input((8, 8, 2)), base, layers.GlobalAveragePooling2D(), layers.Dense(2)], name="outer_seq")
seq.save("nested_sequential.keras"); np.save("nested_sequential.output0.npy", seq.predict(x, verbose=0))
for name, m in [("nested_functional", model), ("nested_sequential", seq)]:
    with open(f"{name}.summary.txt", "w") as f, contextlib.redirect_stdout(f):
        m.summary()
