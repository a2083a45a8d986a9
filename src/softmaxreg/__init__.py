"""softmaxreg: softmax regression and small softmax-headed networks on NumPy.

The public names are imported lazily, so ``import softmaxreg`` is quick and the
command line starts fast::

    import softmaxreg as sr
    (x_train, y_train), (x_test, y_test) = sr.datasets.load("mnist")
    model = sr.Sequential([
        sr.layers.Flatten(),
        sr.layers.Dense(128, activation="relu"),
        sr.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train / 255.0, y_train, epochs=5)
"""

import importlib

__version__ = "0.1.0"

# public name -> (module, attribute or None for the module itself)
_LAZY = {
    "datasets": ("softmaxreg.datasets", None),
    "layers": ("softmaxreg.layers", None),
    "activations": ("softmaxreg.activations", None),
    "losses": ("softmaxreg.losses", None),
    "optimizers": ("softmaxreg.optimizers", None),
    "callbacks": ("softmaxreg.callbacks", None),
    "models": ("softmaxreg.models", None),
    "preprocessing": ("softmaxreg.preprocessing", None),
    "report": ("softmaxreg.report", None),
    "saving": ("softmaxreg.saving", None),
    "errors": ("softmaxreg.errors", None),
    "metrics": ("softmaxreg.metrics", None),
    "keras": ("softmaxreg.keras", None),
    "nn": ("softmaxreg.nn", None),
    "Sequential": ("softmaxreg.models", "Sequential"),
    "History": ("softmaxreg.models", "History"),
    "SoftmaxRegression": ("softmaxreg.estimator", "SoftmaxRegression"),
    "load_model": ("softmaxreg.saving", "load_model"),
    "save_model": ("softmaxreg.saving", "save_model"),
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'softmaxreg' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return __all__
