"""The tutorial's program on real MNIST, with only its imports changed."""

import numpy as np
import pytest

import softmaxreg as sr

TUTORIAL = """
import softmaxreg as tf
from softmaxreg import keras

mnist = tf.keras.datasets.mnist
(training_images, training_labels), (test_images, test_labels) = mnist.load_data()
training_images = training_images / 255.0
test_images = test_images / 255.0
model = keras.models.Sequential([tf.keras.layers.Flatten(),
                                 tf.keras.layers.Dense(128, activation=tf.nn.relu),
                                 tf.keras.layers.Dense(10, activation=tf.nn.softmax)])
model.compile(optimizer=tf.optimizers.Adam(),
              loss='sparse_categorical_crossentropy',
              metrics=['accuracy'])
model.fit(training_images, training_labels, epochs=5)
test_loss, test_accuracy = model.evaluate(test_images, test_labels)
"""


@pytest.mark.slow
@pytest.mark.realdata
def test_tutorial_program_runs_with_imports_changed(real_data_dir, monkeypatch,
                                                    capsys):
    monkeypatch.setenv("SOFTMAXREG_DATA", str(real_data_dir))
    namespace = {}
    exec(compile(TUTORIAL, "tutorial.py", "exec"), namespace)
    assert namespace["test_accuracy"] >= 0.97
    assert namespace["test_loss"] < 0.12
    assert "Epoch 5/5" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.realdata
def test_mlp_reaches_97_percent_on_raw_uint8_with_rescaling(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    model = sr.Sequential([sr.layers.Rescaling(1 / 255), sr.layers.Flatten(),
                           sr.layers.Dense(128, activation="relu"),
                           sr.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    history = model.fit(x_train, y_train, epochs=5, verbose=0, seed=0,
                        validation_split=0.1)
    loss, accuracy = model.evaluate(x_test, y_test)
    assert accuracy >= 0.97
    assert history.history["val_accuracy"][-1] >= 0.97
    assert model.predict(x_test[:1]).dtype == np.float32
