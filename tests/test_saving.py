"""Model files: round trips, and every kind of damaged or hostile file refused."""

import functools
import json
import os
import pickle
import re
import struct
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softmaxreg import saving
from softmaxreg.errors import ModelFileError


class TinyLinear:
    """A minimal model implementing the model-file contract, for saving tests."""

    def __init__(self, n_features, n_classes, dtype="float32"):
        self.n_features, self.n_classes, self.dtype = n_features, n_classes, dtype
        self.coef = np.zeros((n_features, n_classes), dtype=dtype)
        self.intercept = np.zeros(n_classes, dtype=dtype)

    def get_config(self):
        return {
            "class_name": "TinyLinear",
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "dtype": self.dtype,
        }

    @classmethod
    def from_config(cls, config):
        if set(config) != {"class_name", "n_features", "n_classes", "dtype"}:
            raise ValueError(f"config: unexpected keys {sorted(config)}")
        for key in ("n_features", "n_classes"):
            if not isinstance(config[key], int) or not 0 < config[key] < 10_000:
                raise ValueError(f"config[{key!r}] must be a small positive int")
        if config["dtype"] not in ("float32", "float64"):
            raise ValueError(f"config['dtype'] must be float32 or float64")
        return cls(config["n_features"], config["n_classes"], config["dtype"])

    def get_weights_dict(self):
        return {"coef": self.coef, "intercept": self.intercept}

    def set_weights_dict(self, weights):
        expected = self.get_weights_dict()
        if set(weights) != set(expected):
            raise ValueError(
                f"weights: expected {sorted(expected)}, got {sorted(weights)}"
            )
        for name, array in weights.items():
            if (
                array.shape != expected[name].shape
                or array.dtype != expected[name].dtype
            ):
                raise ValueError(
                    f"weight {name!r}: expected shape {expected[name].shape}, "
                    f"found {array.shape}"
                )
        self.coef = weights["coef"].copy()
        self.intercept = weights["intercept"].copy()

    def predict_proba(self, x):
        logits = x @ self.coef + self.intercept  # (n_samples, n_classes)
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return probs / probs.sum(axis=1, keepdims=True)  # (n_samples, n_classes)


@pytest.fixture(autouse=True)
def _register_tiny_linear(monkeypatch):
    monkeypatch.setitem(saving._MODEL_CLASSES, "TinyLinear", TinyLinear)


def _trained(dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    model = TinyLinear(4, 3, dtype)
    model.coef = rng.normal(size=(4, 3)).astype(dtype)
    model.intercept = rng.normal(size=3).astype(dtype)
    return model


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.safetensors"
    saving.save_model(
        _trained(),
        path,
        preprocessing={"input_scale": 1 / 255, "input_shape": [2, 2]},
        provenance={"seed": np.int64(3), "history": {"loss": [np.float32(0.5)]}},
        class_names=["a", "b", "c"],
    )
    return path


def _header(path):
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def _rewrite(path, header, body):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)


def _edit_description(path, edit):
    header, body = _header(path)
    description = json.loads(header["__metadata__"]["softmaxreg"])
    edit(description)
    header["__metadata__"]["softmaxreg"] = json.dumps(description)
    _rewrite(path, header, body)


# --- round trips ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_gives_identical_predictions(tmp_path, dtype):
    model = _trained(dtype)
    path = saving.save_model(model, tmp_path / "m.safetensors")
    loaded = saving.load_model(path)
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(dtype)
    assert loaded.coef.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


def test_description_is_kept_in_metadata(saved):
    loaded = saving.load_model(saved)
    meta = loaded.metadata_
    assert meta["format"] == saving.FORMAT_NAME
    assert meta["format_version"] == saving.FORMAT_VERSION
    assert meta["model_class"] == "TinyLinear"
    assert meta["class_names"] == ["a", "b", "c"]
    assert meta["preprocessing"] == {"input_scale": 1 / 255, "input_shape": [2, 2]}
    assert meta["provenance"] == {"seed": 3, "history": {"loss": [0.5]}}


def test_file_is_plain_safetensors(saved):
    from safetensors.numpy import load_file

    arrays = load_file(saved)
    assert arrays["coef"].shape == (4, 3)


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "m.safetensors"
    saving.save_model(_trained(seed=0), path)
    saving.save_model(_trained(seed=1), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    np.testing.assert_array_equal(saving.load_model(path).coef, _trained(seed=1).coef)


def test_failed_save_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.safetensors"
    saving.save_model(_trained(seed=0), path)
    bad = _trained(seed=1)
    bad.intercept = np.array(["x", "y", "z"])
    with pytest.raises(TypeError, match="'intercept' has dtype"):
        saving.save_model(bad, path)
    np.testing.assert_array_equal(saving.load_model(path).coef, _trained(seed=0).coef)
    assert len(list(tmp_path.iterdir())) == 1


# --- damaged and hostile files --------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="model file not found"):
        saving.load_model(tmp_path / "nope.safetensors")


def test_pickle_payload_is_refused_without_running(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickle ran')",))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ModelFileError, match="looks like a pickle.*never unpickles"):
        saving.load_model(path)


@pytest.mark.parametrize("name", ["os:system", "builtins.eval", "Dense"])
def test_unknown_or_object_path_model_class_is_refused(saved, name):
    def edit(description):
        description["model_class"] = name
        description["config"]["class_name"] = name

    _edit_description(saved, edit)
    with pytest.raises(ModelFileError, match="unknown model class.*nothing named"):
        saving.load_model(saved)


def test_config_refused_by_the_class_becomes_model_file_error(saved):
    _edit_description(saved, lambda d: d["config"].update(exec="os.system"))
    with pytest.raises(ModelFileError, match="invalid model: config: unexpected keys"):
        saving.load_model(saved)


@pytest.mark.parametrize("keep", [0, 5, 8, 100, -1])
def test_truncated_file(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    with pytest.raises(ModelFileError, match="truncated"):
        saving.load_model(saved)


def test_wrong_shaped_weight_is_named(saved):
    header, body = _header(saved)
    coef = header["coef"]
    begin, _ = coef["data_offsets"]
    # a (4, 2) coef: a head with one class too few
    new_body = (
        body[:begin] + body[begin : begin + 4 * 2 * 4] + body[begin + 4 * 3 * 4 :]
    )
    coef.update(shape=[4, 2], data_offsets=[begin, begin + 32])
    for name, entry in header.items():
        if name != "__metadata__" and entry["data_offsets"][0] > begin:
            entry["data_offsets"] = [o - 16 for o in entry["data_offsets"]]
    _rewrite(saved, header, new_body)
    with pytest.raises(ModelFileError, match=r"weight 'coef': expected shape \(4, 3\)"):
        saving.load_model(saved)


def test_shape_disagreeing_with_byte_span(saved):
    header, body = _header(saved)
    header["coef"]["shape"] = [4, 4]
    _rewrite(saved, header, body)
    with pytest.raises(ModelFileError, match=r"shape \(4, 4\) needs 64 bytes"):
        saving.load_model(saved)


def test_huge_declared_shape_allocates_nothing(saved):
    header, body = _header(saved)
    header["coef"]["shape"] = [10**9, 10**9]
    _rewrite(saved, header, body)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match="needs"):
            saving.load_model(saved)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_huge_header_length_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(
        ModelFileError, match="header declares 4611686018427387904 bytes"
    ):
        saving.load_model(path)


def test_future_format_version(saved):
    _edit_description(saved, lambda d: d.update(format_version=99))
    with pytest.raises(ModelFileError, match="format version 99 by a newer softmaxreg"):
        saving.load_model(saved)


def test_missing_format_version(saved):
    _edit_description(saved, lambda d: d.pop("format_version"))
    with pytest.raises(ModelFileError, match="no 'format_version'"):
        saving.load_model(saved)


def test_safetensors_without_description(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "other.safetensors"
    save_file({"coef": np.zeros((4, 3), np.float32)}, path)
    with pytest.raises(ModelFileError, match="without a softmaxreg description"):
        saving.load_model(path)


def test_unsupported_dtype(saved):
    header, body = _header(saved)
    header["coef"]["dtype"] = "BOOL"
    _rewrite(saved, header, body)
    with pytest.raises(ModelFileError, match="unsupported dtype 'BOOL'"):
        saving.load_model(saved)


# --- property-based: nothing but ModelFileError, quickly, in bounded memory ------


def _load_bytes(tmp_path, data):
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(data)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        saving.load_model(path)
    except ModelFileError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.perf_counter() - started < 2.0
    # the bytes read, one copy of the arrays, and a little bookkeeping
    assert peak < 4 * len(data) + 200_000


_FUZZ = settings(
    max_examples=int(os.environ.get("SOFTMAXREG_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@_FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes_only_raise_model_file_error(tmp_path, data):
    _load_bytes(tmp_path, data)


@_FUZZ
@given(
    edits=st.lists(
        st.tuples(
            st.integers(min_value=0), st.integers(0, 255), st.sampled_from("sid")
        ),
        min_size=1,
        max_size=6,
    ),
    cut=st.none() | st.integers(min_value=0),
)
def test_mutated_valid_files_only_raise_model_file_error(tmp_path, edits, cut):
    base = tmp_path / "base.safetensors"
    saving.save_model(_trained(), base, class_names=["a", "b", "c"])
    data = bytearray(base.read_bytes())
    for position, value, kind in edits:
        position %= len(data) + 1
        if kind == "s" and position < len(data):
            data[position] = value
        elif kind == "i":
            data.insert(position, value)
        elif position < len(data):
            del data[position]
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    _load_bytes(tmp_path, bytes(data))


# --- the library's own models ----------------------------------------------------


def _fitted_estimator(dtype):
    from softmaxreg import SoftmaxRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)).astype(dtype)
    y = np.arange(60) % 3
    return SoftmaxRegression(max_iter=30).fit(x, y), x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_estimator_round_trip(tmp_path, dtype):
    model, x = _fitted_estimator(dtype)
    path = saving.save_model(model, tmp_path / "softmax.safetensors")
    loaded = saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.metadata_["model_class"] == "SoftmaxRegression"


def test_estimator_wrong_shaped_head_is_named(tmp_path):
    model, _ = _fitted_estimator(np.float32)
    model.coef_ = np.zeros((2, 5), np.float32)  # a head with one class too few
    path = saving.save_model(model, tmp_path / "softmax.safetensors")
    with pytest.raises(ModelFileError, match=r"'coef' must have shape \(3, 5\)"):
        saving.load_model(path)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


@functools.cache
def _estimator_bytes():
    model, _ = _fitted_estimator(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        return saving.save_model(model, Path(folder) / "m.safetensors").read_bytes()


@functools.cache
def _mlp_bytes():
    model, _, _ = _trained_mlp("float32")
    with tempfile.TemporaryDirectory() as folder:
        return saving.save_model(model, Path(folder) / "m.safetensors").read_bytes()


@_FUZZ
@given(choice=st.integers(min_value=0), replacement=_JSON)
def test_edited_estimator_description_only_raises_model_file_error(
    tmp_path, choice, replacement
):
    x = np.random.default_rng(0).normal(size=(60, 5)).astype(np.float32)
    path = tmp_path / "softmax.safetensors"
    path.write_bytes(_estimator_bytes())

    def edit(description):
        paths = [p for p in _paths(description) if p]
        *parents, last = paths[choice % len(paths)]
        target = description
        for key in parents:
            target = target[key]
        target[last] = replacement

    _edit_description(path, edit)
    try:
        loaded = saving.load_model(path)
    except ModelFileError:
        return
    assert loaded.predict_proba(x).shape == (60, 3)


def _trained_mlp(dtype):
    import softmaxreg as sr
    from softmaxreg import layers

    rng = np.random.default_rng(0)
    x = rng.random((80, 6, 6)).astype(dtype)
    y = np.arange(80) % 4
    model = sr.Sequential(
        [
            layers.Flatten(input_shape=(6, 6)),
            layers.Dense(8, activation="relu"),
            layers.Dense(4, activation="softmax"),
        ],
        dtype=dtype,
    )
    model.compile(
        optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(x, y, epochs=2, batch_size=16, seed=0, verbose=0)
    return model, x, y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sequential_round_trip_predict_and_evaluate_identical(tmp_path, dtype):
    model, x, y = _trained_mlp(dtype)
    path = saving.save_model(model, tmp_path / "mlp.safetensors")
    loaded = saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.evaluate(x, y) == model.evaluate(x, y)
    assert loaded.predict(x).dtype == np.dtype(dtype)


def _mlp_file(tmp_path):
    model, _, _ = _trained_mlp("float32")
    return saving.save_model(model, tmp_path / "mlp.safetensors")


@pytest.mark.parametrize("layer_name", ["Conv2D", "os.system", "builtins:eval"])
def test_unknown_layer_is_refused(tmp_path, layer_name):
    path = _mlp_file(tmp_path)
    _edit_description(
        path, lambda d: d["config"]["layers"][1].update(class_name=layer_name)
    )
    with pytest.raises(ModelFileError, match=f"invalid model: .*{layer_name}"):
        saving.load_model(path)


def test_huge_declared_layer_is_refused_before_allocating(tmp_path):
    path = _mlp_file(tmp_path)

    def edit(description):
        description["config"]["layers"][1]["config"]["units"] = 10**9
        description["config"]["input_shape"] = [1000, 1000]

    _edit_description(path, edit)
    tracemalloc.start()
    try:
        with pytest.raises(
            ModelFileError, match=r"layers.1.kernel: .* \(1000000, 1000000000\)"
        ):
            saving.load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_sequential_wrong_shaped_weight_is_named(tmp_path):
    model, _, _ = _trained_mlp("float32")
    path = saving.save_model(model, tmp_path / "mlp.safetensors")
    header, body = _header(path)
    entry = header["layers.2.kernel"]
    begin, end = entry["data_offsets"]
    entry["shape"] = [4, 8]  # transposed: same bytes, wrong shape
    _rewrite(path, header, body)
    with pytest.raises(
        ModelFileError,
        match=r"layers.2.kernel: .* implies shape \(8, 4\), the file holds \(4, 8\)",
    ):
        saving.load_model(path)


@_FUZZ
@given(choice=st.integers(min_value=0), replacement=_JSON)
def test_edited_sequential_description_only_raises_model_file_error(
    tmp_path, choice, replacement
):
    path = tmp_path / "mlp.safetensors"
    path.write_bytes(_mlp_bytes())

    def edit(description):
        paths = [p for p in _paths(description) if p]
        *parents, last = paths[choice % len(paths)]
        target = description
        for key in parents:
            target = target[key]
        target[last] = replacement

    _edit_description(path, edit)
    data = path.read_bytes()
    _load_bytes(tmp_path, data)


def test_flipped_weight_byte_is_detected(saved):
    data = bytearray(saved.read_bytes())
    data[-3] ^= 0x01  # inside the last array's bytes
    saved.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="arrays do not match the SHA-256"):
        saving.load_model(saved)


@pytest.mark.parametrize("first_bytes", [b"\x80", b"PK"])
def test_header_length_that_starts_like_pickle_or_zip_still_loads(
    tmp_path, first_bytes
):
    # a header whose length ends in the bytes 0x80 or "PK" is a valid file
    path = tmp_path / "m.safetensors"
    saving.save_model(_trained(), path)
    header, body = _header(path)
    description = json.loads(header["__metadata__"]["softmaxreg"])
    header["__metadata__"]["pad"] = ""
    size = len(json.dumps(header).encode())
    modulus = 256 ** len(first_bytes)
    wanted = int.from_bytes(first_bytes, "little")
    header["__metadata__"]["pad"] = " " * ((wanted - size) % modulus)
    _rewrite(path, header, body)
    assert path.read_bytes()[: len(first_bytes)] == first_bytes
    loaded = saving.load_model(path)
    assert loaded.metadata_ == description


# --- temporary files and permissions -------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_get_the_umask_permissions_of_a_plain_open(tmp_path, umask):
    previous = os.umask(umask)
    try:
        model_path = saving.save_model(_trained(), tmp_path / "m.safetensors")
        text_path = tmp_path / "report.txt"
        saving.atomic_write_text(text_path, "hello")
    finally:
        os.umask(previous)
    expected = 0o666 & ~umask
    assert model_path.stat().st_mode & 0o777 == expected
    assert text_path.stat().st_mode & 0o777 == expected


def test_atomic_write_text_and_bytes_replace_whole_files(tmp_path):
    path = tmp_path / "out.json"
    saving.atomic_write_text(path, "é first\n")
    saving.atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    saving.atomic_write_text(path, "\u00e9", encoding="latin-1")
    assert path.read_bytes() == b"\xe9"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_failed_write_removes_its_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    saving.save_model(_trained(seed=0), path)

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        saving.save_model(_trained(seed=1), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_stale_temporaries_of_the_same_target_are_removed(tmp_path):
    old = time.time() - 2 * 3600
    stale = tmp_path / ".m.safetensors.dead1234.tmp"
    fresh = tmp_path / ".m.safetensors.live5678.tmp"  # maybe another writer's
    other = tmp_path / ".other.safetensors.dead1234.tmp"
    unrelated = tmp_path / "m.safetensors.dead.tmp"  # not our pattern
    longer = tmp_path / ".m.safetensors.gz.dead1234.tmp"  # m.safetensors.gz's
    for leftover in (stale, fresh, other, unrelated, longer):
        leftover.write_bytes(b"partial")
        if leftover is not fresh:
            os.utime(leftover, (old, old))
    saving.save_model(_trained(), tmp_path / "m.safetensors")
    assert not stale.exists()
    assert fresh.exists() and other.exists() and unrelated.exists()
    assert longer.exists()


def test_stale_temporaries_with_glob_characters_in_the_name(tmp_path):
    old = time.time() - 2 * 3600
    target = tmp_path / "m[1].safetensors"
    stale = tmp_path / ".m[1].safetensors.dead1234.tmp"
    lookalike = tmp_path / ".m1.safetensors.dead1234.tmp"
    for leftover in (stale, lookalike):
        leftover.write_bytes(b"partial")
        os.utime(leftover, (old, old))
    saving.save_model(_trained(), target)
    assert not stale.exists() and lookalike.exists()
    assert saving.load_model(target).coef.shape == (4, 3)


# --- the description is validated strictly ---------------------------------------


@pytest.mark.parametrize(
    "edit, field, message",
    [
        (lambda d: d.update(preprocessing="x"), "preprocessing", "expected an object"),
        (lambda d: d["preprocessing"].update(input_scale="1/255"),
         "preprocessing.input_scale", "finite number > 0"),
        (lambda d: d["preprocessing"].update(input_scale=0),
         "preprocessing.input_scale", "> 0"),
        (lambda d: d["preprocessing"].update(input_scale=10**400),
         "preprocessing.input_scale", "> 0"),
        (lambda d: d["preprocessing"].update(input_shape=[3, 3]),
         "preprocessing.input_shape", r"holds 9 values .* takes 4 features"),
        (lambda d: d["preprocessing"].update(input_shape=[1, 1, 2, 2]),
         "preprocessing.input_shape", "1 to 3 positive ints"),
        (lambda d: d["preprocessing"].update(input_shape=[4, 1.0]),
         "preprocessing.input_shape", "1 to 3 positive ints"),
        (lambda d: d["preprocessing"].update(image_mode="photo"),
         "preprocessing.image_mode", r"\['digit', 'object'\]"),
        (lambda d: d["preprocessing"].update(invert="yes"), "preprocessing.invert",
         "'auto', true or false"),
        (lambda d: d["preprocessing"].update(colour=True), "preprocessing.colour",
         "unknown key"),
        (lambda d: d.update(class_names=["a", "b"]), "class_names",
         r"expected 3 names \(one per class\), found 2"),
        (lambda d: d.update(class_names=["a", "b", 3]), "class_names",
         "list of strings"),
        (lambda d: d.update(provenance=[1]), "provenance", "expected an object"),
        (lambda d: d["provenance"].update(seed="3"), "provenance.seed", "an int"),
        (lambda d: d["provenance"].update(epochs=-1), "provenance.epochs", ">= 0"),
        (lambda d: d["provenance"].update(dataset=7), "provenance.dataset",
         "a string"),
        (lambda d: d["provenance"].update(test_accuracy="high"),
         "provenance.test_accuracy", "finite number or null"),
        (lambda d: d["provenance"]["history"]["loss"].append("x"),
         "provenance.history.loss", "finite numbers"),
        (lambda d: d["provenance"]["history"].update(accuracy=[0.1, 0.2]),
         "provenance.history", "lists of one length"),
        (lambda d: d["provenance"].update(history=[0.5]), "provenance.history",
         "expected an object"),
        (lambda d: d.update(library_version=3), "library_version", "a string"),
        (lambda d: d.update(extra=1), "extra", "unknown key"),
    ],
)
def test_bad_description_fields_are_named(saved, edit, field, message):
    _edit_description(saved, edit)
    pattern = (
        f"{re.escape(str(saved))}: description field {re.escape(field)}: "
        f".*{message}"
    )
    with pytest.raises(ModelFileError, match=pattern):
        saving.load_model(saved)


def test_non_finite_history_is_refused(saved):
    # JSON as Python writes it accepts NaN; the history must not hold one
    _edit_description(saved, lambda d: d["provenance"]["history"].update(
        loss=[float("nan")]))
    with pytest.raises(ModelFileError, match="history.loss: expected a list of fin"):
        saving.load_model(saved)


def test_unknown_provenance_keys_may_hold_any_json(tmp_path):
    provenance = {"note": {"by": "me", "tags": [1, 2.5, None, True]}, "seed": None,
                  "test_loss": None, "interrupted": False}
    path = saving.save_model(_trained(), tmp_path / "m.safetensors",
                             provenance=provenance)
    assert saving.load_model(path).metadata_["provenance"] == provenance


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"preprocessing": {"input_shape": [28, 28]}},
         r"preprocessing.input_shape: \[28, 28\] holds 784 values"),
        ({"class_names": ["a"]}, "class_names: expected 3 names"),
        ({"provenance": {"history": {"loss": [float("inf")]}}},
         "provenance.history.loss"),
        ({"provenance": {"epochs": np.int64(-2)}}, "provenance.epochs"),
    ],
)
def test_save_refuses_what_load_would_refuse(tmp_path, kwargs, message):
    path = tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match=f"save_model: {message}"):
        saving.save_model(_trained(), path, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_library_models_check_their_own_sizes(tmp_path):
    model, _ = _fitted_estimator(np.float32)  # 5 features, 3 classes
    path = tmp_path / "softmax.safetensors"
    saving.save_model(model, path, preprocessing={"input_shape": [5]},
                      class_names=["x", "y", "z"])
    assert saving.load_model(path).metadata_["class_names"] == ["x", "y", "z"]
    with pytest.raises(ValueError, match="takes 5 features"):
        saving.save_model(model, path, preprocessing={"input_shape": [2, 2]})
    mlp, _, _ = _trained_mlp("float32")  # 6x6 inputs, 4 classes
    saving.save_model(mlp, path, preprocessing={"input_shape": [6, 6]},
                      class_names=list("abcd"))
    with pytest.raises(ValueError, match="expected 4 names"):
        saving.save_model(mlp, path, class_names=list("abc"))


# --- the description digest ------------------------------------------------------


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.update(class_names=["a", "b", "x"]),
        lambda d: d["provenance"].update(seed=4),
        lambda d: d["preprocessing"].update(input_scale=1 / 256),
        lambda d: d["provenance"].update(added="by hand"),
        lambda d: d.update(library_version="0.0.0"),
    ],
)
def test_valid_but_accidental_edit_is_detected(saved, edit):
    _edit_description(saved, edit)
    with pytest.raises(
        ModelFileError, match="description .* does not match the SHA-256 digest"
    ):
        saving.load_model(saved)


def test_description_digest_guards_against_accidents_only(saved):
    # whoever edits on purpose can recompute the digest: documented, not hidden
    def edit(description):
        description["class_names"] = ["a", "b", "x"]
        description["description_sha256"] = saving.description_digest(description)

    _edit_description(saved, edit)
    assert saving.load_model(saved).metadata_["class_names"] == ["a", "b", "x"]


def test_missing_description_digest(saved):
    _edit_description(saved, lambda d: d.pop("description_sha256"))
    with pytest.raises(ModelFileError, match="no 'description_sha256'"):
        saving.load_model(saved)


def test_format_version_1_files_without_description_digest_still_load(saved):
    def edit(description):
        description["format_version"] = 1
        del description["description_sha256"]

    _edit_description(saved, edit)
    assert saving.load_model(saved).metadata_["format_version"] == 1


def test_key_order_and_spacing_do_not_matter(saved):
    # a tool re-serialising the JSON differently changes no value
    header, body = _header(saved)
    description = json.loads(header["__metadata__"]["softmaxreg"])
    reordered = dict(reversed(list(description.items())))
    header["__metadata__"]["softmaxreg"] = json.dumps(reordered, indent=2)
    _rewrite(saved, header, body)
    assert saving.load_model(saved).metadata_ == description
