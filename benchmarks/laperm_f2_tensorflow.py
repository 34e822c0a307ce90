"""Cross-check in TensorFlow: the weight-agnostic F2 recipe of LaPerm (Qiu & Suda 2020, §5.5) run in the framework
the published number (78.14 %) comes from, to tell a PyTorch-port difference from a recipe that does not reach it.

Not part of the project's environment: it needs ``tensorflow`` and ``tf_keras`` (Keras 2), installed on their own,
e.g. ``python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu tf-keras``, and reads MNIST's raw IDX files
from ``$SLOTLAB_DATA/MNIST/raw`` (numpy only; torch is not imported).

The recipe, as the authors' notebook sets it (ihsuy/Train-by-Reconnect ``notebooks/F1_and_F2.ipynb``, "the
reference" below): 784-128-64-10, no biases, ReLU, softmax output; every kernel entry 0.03, kept with probability
1/15, 1/7, 1/3 (layer by layer); L2 1e-4 on the two hidden kernels, added to every sample's loss as Keras does;
Keras Adam (epsilon 1e-7), lr 1e-3 · 0.95^epoch; batch 128, 25 epochs, inputs in [0, 1]; a sync every k = 250
steps, each kernel column (one output unit) replaced by its initial values sorted and placed in the rank order of
the current column, Adam's moments kept. The test set is evaluated right after every sync (as the reference's
aligned 250-step validation does); ``best`` is the maximum over those evaluations (the reference's protocol),
``final`` the last one.

    /tmp/tf/bin/python benchmarks/laperm_f2_tensorflow.py --seeds 0 1 2 3 4 5 6 7 8 9
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

KEEP = ((1, 15), (1, 7), (1, 3))  # (kept, out of) per layer
VALUE, EPOCHS, BATCH, SYNC_PERIOD = 0.03, 25, 128, 250


def read_idx(path: Path, header: int) -> np.ndarray:
    return np.frombuffer(path.read_bytes(), np.uint8, offset=header)


def mnist(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    raw = root / "MNIST" / "raw"
    if not raw.is_dir():
        raise SystemExit(f"no MNIST IDX files under {raw}; set SLOTLAB_DATA to a prepared data root")
    splits = ("train", "t10k")
    images = [read_idx(raw / f"{s}-images-idx3-ubyte", 16).reshape(-1, 28, 28, 1) for s in splits]
    labels = [read_idx(raw / f"{s}-labels-idx1-ubyte", 8).astype(np.int64) for s in splits]
    return images[0] / np.float32(255), labels[0], images[1] / np.float32(255), labels[1]


def run(seed: int, data: tuple[np.ndarray, ...]) -> dict[str, float]:
    import tensorflow as tf
    import tf_keras as keras

    x_train, y_train, x_test, y_test = data
    rng = np.random.default_rng(seed)
    tf.random.set_seed(seed)
    layers, l2 = keras.layers, keras.regularizers.l2
    model = keras.Sequential(
        [
            layers.Flatten(input_shape=(28, 28, 1)),
            layers.Dense(128, activation="relu", use_bias=False, kernel_regularizer=l2(1e-4)),
            layers.Dense(64, activation="relu", use_bias=False, kernel_regularizer=l2(1e-4)),
            layers.Dense(10, activation="softmax", use_bias=False),
        ]
    )
    for kernel, (kept, out_of) in zip(model.trainable_variables, KEEP, strict=True):
        keep = rng.integers(1, out_of + 1, kernel.shape) <= kept  # the reference's per-entry draw
        kernel.assign(np.where(keep, np.float32(VALUE), np.float32(0)))
    # Keras kernels are (in, out): one output unit is a column, so rows below are the transposed kernel.
    sorted_initial = [tf.sort(tf.transpose(k), axis=1) for k in model.trainable_variables]

    @tf.function
    def sync() -> None:
        for kernel, initial in zip(model.trainable_variables, sorted_initial, strict=True):
            rows = tf.transpose(kernel)  # (out, in)
            ranks = tf.argsort(tf.argsort(rows, axis=1, stable=True), axis=1, stable=True)
            kernel.assign(tf.transpose(tf.gather(initial, ranks, batch_dims=1)))

    optimizer = keras.optimizers.Adam()

    @tf.function
    def train_step(x: tf.Tensor, y: tf.Tensor) -> None:
        with tf.GradientTape() as tape:
            per_sample = keras.losses.sparse_categorical_crossentropy(y, model(x, training=True))
            loss = per_sample + tf.add_n(
                model.losses
            )  # a vector: its gradient is the batch sum, as the reference
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))

    def test_accuracy() -> float:
        return float((model.predict(x_test, batch_size=1000, verbose=0).argmax(1) == y_test).mean())

    step, accuracies, start = 0, [], time.perf_counter()
    for epoch in range(EPOCHS):
        optimizer.learning_rate.assign(1e-3 * 0.95**epoch)
        order = rng.permutation(len(y_train))
        for i in range(-(-len(y_train) // BATCH)):
            batch = order[i * BATCH : (i + 1) * BATCH]
            train_step(x_train[batch], y_train[batch])
            step += 1
            if step % SYNC_PERIOD == 0:
                sync()
                accuracies.append(test_accuracy())
    return {"final": accuracies[-1], "best": max(accuracies), "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    data = mnist(Path(os.environ.get("SLOTLAB_DATA", "data")))
    import tensorflow as tf

    print(f"MNIST F2 weight-agnostic, LaPerm in TensorFlow {tf.__version__}; {platform.machine()}\n")
    print("| seed | test % (final) | test % (best sync, on test) | s |")
    print("|---|---|---|---|")
    rows = []
    for seed in args.seeds:
        r = run(seed, data)
        rows.append(r)
        print(f"| {seed} | {100 * r['final']:.2f} | {100 * r['best']:.2f} | {r['seconds']:.0f} |", flush=True)
    best = np.array([100 * r["best"] for r in rows])
    spread = best.std(ddof=1) if len(best) > 1 else 0.0
    print(f"\nbest sync over {len(best)} seeds: mean {best.mean():.2f} ± {spread:.2f}, max {best.max():.2f}")


if __name__ == "__main__":
    main()
