"""Model files: one safetensors file holding the weights and a JSON description.

A model file is safe to open when it comes from a stranger: nothing in it is
ever imported, called or unpickled. The layout is the plain safetensors one::

    8 bytes   little-endian length N of the header
    N bytes   JSON header: per tensor {dtype, shape, data_offsets}, plus
              "__metadata__": {"softmaxreg": "<JSON description>"}
    rest      the raw little-endian tensor bytes, back to back

The description (``model.metadata_`` after loading) holds the format name and
version, the library version, the model class and its config, the input
preprocessing, the class names and the training provenance.

Before the safetensors library sees a byte, :func:`read_container` checks the
header length and each tensor's byte span against the file's real size, so a
hostile or damaged file can neither make us allocate far beyond its size nor
raise anything but :class:`~softmaxreg.errors.ModelFileError`. The whole
description is then validated field by field (see :func:`check_description`).

Two SHA-256 digests are recorded: one of the arrays (``arrays_sha256``) and
one of the canonical JSON of the description without that digest
(``description_sha256``). They catch damaged bytes and accidental edits that
the checks above let through; they guard against accidents, not attackers:
whoever edits a file on purpose can recompute them.
"""

import glob
import hashlib
import json
import math
import os
import re
import secrets
import struct
import time
from pathlib import Path

import numpy as np

from softmaxreg.errors import ModelFileError

FORMAT_NAME = "softmaxreg-model"
# Version 2 added the digest of the description ("description_sha256").
FORMAT_VERSION = 2
METADATA_KEY = "softmaxreg"

# A description of a few layers fits in kilobytes; this bound only stops a
# hostile header from making us parse gigabytes of JSON.
_MAX_HEADER_BYTES = 16 * 1024 * 1024
_MAX_RANK = 8
# Layers without weights that keep the number of features per sample.
_SHAPE_KEEPING_LAYERS = ("Flatten", "Dropout", "Rescaling")
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}

# safetensors dtype code -> NumPy dtype, restricted to what models hold.
_DTYPES = {
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
    "U8": np.dtype("u1"),
}
_DTYPE_CODES = {dtype: code for code, dtype in _DTYPES.items()}

# The only classes a model file may name. Each value is a fixed "module:attribute"
# of this package (or, in tests, a class); the file's text never picks a module.
_MODEL_CLASSES = {
    "Sequential": "softmaxreg.models:Sequential",
    "SoftmaxRegression": "softmaxreg.estimator:SoftmaxRegression",
}

_PICKLE_HINT = (
    "softmaxreg never unpickles files; re-save the model with "
    "softmaxreg.save_model, which writes safetensors"
)


# ---------------------------------------------------------------------------
# Public API


def save_model(model, path, *, preprocessing=None, provenance=None, class_names=None):
    """Write ``model`` to one safetensors file at ``path``, atomically.

    Parameters
    ----------
    model : Sequential or SoftmaxRegression
        Any object with ``get_config()`` and ``get_weights_dict()``.
    path : str or os.PathLike
        Destination; its folder must exist. An existing file is replaced only
        once the new one is completely on disk.
    preprocessing : dict, optional
        How raw inputs become model inputs, for example
        ``{"input_scale": 1 / 255, "input_shape": [28, 28]}``.
    provenance : dict, optional
        How the model was trained: dataset and checksum, seed, epochs, history,
        final metrics. Must be JSON-serialisable (NumPy scalars are converted).
    class_names : list of str, optional
        A readable name per class index.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ValueError
        ``preprocessing``, ``class_names`` or ``provenance`` break the rules
        that :func:`load_model` enforces (see :func:`check_description`).
    """
    config = model.get_config()
    weights = model.get_weights_dict()
    class_name = config.get("class_name") if isinstance(config, dict) else None
    if not isinstance(class_name, str):
        raise TypeError(
            "model.get_config() must return a dict with a 'class_name' string; "
            f"got {type(config).__name__}"
        )
    description = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library_version": _library_version(),
        "model_class": class_name,
        "config": config,
        "preprocessing": dict(preprocessing or {}),
        "class_names": None if class_names is None else [str(c) for c in class_names],
        "provenance": dict(provenance or {}),
    }
    description = _to_json(description)
    problem = _description_problem(description, _model_sizes(model))
    if problem is not None:
        field, text = problem
        raise ValueError(
            f"save_model: {field}: {text}; nothing was written (a file saved so "
            "would not load)"
        )
    return write_container(path, weights, description)


def load_model(path):
    """Load a model written by :func:`save_model`.

    The file's description names the model class, which must be one this
    library knows; its config is validated strictly by the class, and every
    array's name, shape and dtype is checked against it. Nothing named in the
    file is imported or called.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    model
        The rebuilt model, with the file's description in ``model.metadata_``.

    Raises
    ------
    ModelFileError
        The file is missing, truncated, not a softmaxreg model file, from a
        newer format version, its description breaks a rule of
        :func:`check_description`, its weights do not match its description,
        or a digest does not match (the file was damaged or edited).
    """
    tensors, description = read_container(path, expected_format=FORMAT_NAME)
    model = build_model(description, tensors, path)
    check_description(description, model, path)
    check_digest(tensors, description, path)
    model.metadata_ = description
    return model


def build_model(description, tensors, path):
    """Rebuild a model from a checked description and its arrays."""
    class_name = description.get("model_class")
    config = description.get("config")
    cls = _resolve_model_class(class_name, path)
    if not isinstance(config, dict) or config.get("class_name") != class_name:
        raise ModelFileError(
            f"{path}: the model description's 'config' must be an object whose "
            f"'class_name' is {class_name!r}; the file is damaged or was edited"
        )
    _check_declared_shapes(class_name, config, tensors, path)
    try:
        model = cls.from_config(config)
        model.set_weights_dict(tensors)
    except (ValueError, TypeError, KeyError) as error:
        raise ModelFileError(f"{path}: invalid model: {_one_line(error)}") from error
    return model


# ---------------------------------------------------------------------------
# The container: safetensors bytes plus one JSON description


def write_container(path, tensors, description):
    """Write ``tensors`` and the JSON ``description`` as one safetensors file.

    The bytes go to a temporary file in the destination folder, are flushed
    and fsynced, then renamed over ``path``: a crash leaves either the old file
    or the new one, never a mix.

    Parameters
    ----------
    path : str or os.PathLike
    tensors : dict of str to numpy.ndarray
    description : dict
        JSON-serialisable; NumPy scalars and arrays are converted.

    Returns
    -------
    pathlib.Path
    """
    from safetensors.numpy import save

    path = Path(path)
    arrays = {}
    for name, array in tensors.items():
        array = np.asarray(array)
        if array.dtype.newbyteorder("<") not in _DTYPE_CODES:
            raise TypeError(
                f"array {name!r} has dtype {array.dtype}; model files hold "
                "float16/32/64, int32/64 or uint8 arrays"
            )
        # a C-ordered little-endian copy; 0-d arrays keep their shape ()
        arrays[str(name)] = np.array(
            array, dtype=array.dtype.newbyteorder("<"), order="C"
        )
    description = _to_json({**description, "arrays_sha256": arrays_digest(arrays)})
    description["description_sha256"] = description_digest(description)
    text = json.dumps(description, sort_keys=True)
    data = save(arrays, metadata={METADATA_KEY: text})
    atomic_write_bytes(path, data)
    return path


def read_container(path, *, expected_format):
    """Read and check a file written by :func:`write_container`.

    Parameters
    ----------
    path : str or os.PathLike
    expected_format : str
        The description's required ``"format"`` value.

    Returns
    -------
    tensors : dict of str to numpy.ndarray
    description : dict
        The parsed JSON description.
    """
    data = _read_bytes(path)
    header, data_start = _parse_header(data, path)
    description = _parse_description(header, path, expected_format)
    tensors = _decode_tensors(data, header, data_start, path)
    return tensors, description


def check_digest(tensors, description, path):
    """Compare the arrays with the digest recorded when the file was written.

    Called after the arrays' names and shapes and the description's fields
    were checked, so that a specific problem is reported as such rather than
    as damage. Files of format version 1 carry no description digest.
    """
    recorded = description.get("arrays_sha256")
    if not isinstance(recorded, str):
        raise ModelFileError(
            f"{path}: the description has no 'arrays_sha256'; the file was not "
            "written by softmaxreg.save_model or was edited"
        )
    if recorded != arrays_digest(tensors):
        raise ModelFileError(
            f"{path} is damaged or was modified: its arrays do not match the "
            "SHA-256 digest recorded when it was written"
        )
    if description.get("format_version") == 1:
        return  # written before the description had a digest
    recorded = description.get("description_sha256")
    if not isinstance(recorded, str):
        raise ModelFileError(
            f"{path}: the description has no 'description_sha256'; the file was "
            "not written by softmaxreg or was edited"
        )
    try:
        actual = description_digest(description)
    except (ValueError, RecursionError):
        actual = None
    if recorded != actual:
        raise ModelFileError(
            f"{path} is damaged or was edited: its description (the JSON metadata) "
            "does not match the SHA-256 digest 'description_sha256' recorded when "
            "it was written; save the model again from its source"
        )


def description_digest(description):
    """SHA-256 of the canonical JSON of ``description`` minus its own digest.

    Canonical: keys sorted, no spaces, ASCII only. A guard against accidental
    edits and damage, not against attackers, who can recompute it.
    """
    rest = {k: v for k, v in description.items() if k != "description_sha256"}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def arrays_digest(arrays):
    """SHA-256 over every array's name, dtype, shape and bytes, in name order.

    It catches damage to the array bytes, which the header checks cannot see.
    It is no signature: whoever edits a file can recompute it.
    """
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.asarray(arrays[name])
        little_endian = array.astype(array.dtype.newbyteorder("<"), copy=False)
        head = f"{name}\0{little_endian.dtype.str}\0{list(array.shape)}\0"
        digest.update(head.encode("utf-8"))
        digest.update(np.ascontiguousarray(little_endian).tobytes())
    return digest.hexdigest()


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` through a fsynced temporary file and a rename.

    The temporary file ``.<name>.<random>.tmp`` sits next to ``path`` and is
    removed on any error. The new file gets the permissions a plain ``open()``
    would give (0o666 less the umask), not the 0o600 of :mod:`tempfile`.

    Notes
    -----
    A process killed outright (SIGKILL, power loss) cannot remove its
    temporary file. Each later write to the same ``path`` deletes such
    leftovers once they are more than :data:`STALE_TEMPORARY_SECONDS` old, so
    one may stay until then. Files of other names are never touched.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    remove_stale_temporaries(path, ".tmp")
    descriptor, temporary = create_temporary(path, ".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        _remove_quietly(temporary)
        raise
    _fsync_folder(folder)


def atomic_write_text(path, text, *, encoding="utf-8"):
    """Write ``text`` to ``path`` atomically; see :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode(encoding))


#: Age in seconds after which a leftover temporary file of the same target is
#: taken to belong to a dead writer and deleted.
STALE_TEMPORARY_SECONDS = 3600


def create_temporary(target, suffix):
    """Create ``.<target name>.<random><suffix>`` next to ``target``, exclusively.

    Returns
    -------
    (int, str)
        An open write-only descriptor and the temporary path. The mode is
        0o666 less the process umask, as for a plain ``open()``.
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        name = folder / f".{target.name}.{secrets.token_hex(4)}{suffix}"
        try:
            return os.open(name, flags, 0o666), str(name)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {target}")


def remove_stale_temporaries(target, suffix, max_age=None):
    """Delete ``.<target name>.*<suffix>`` files older than ``max_age`` seconds.

    Only temporary files of ``target`` itself are considered, those whose
    random part has the 8 characters that :func:`create_temporary` (and
    :func:`tempfile.mkstemp`, used before) put there: the leftovers of
    ``m.safetensors`` are not those of ``m``. Errors (a file removed
    meanwhile, no permission) are ignored.
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    max_age = STALE_TEMPORARY_SECONDS if max_age is None else max_age
    cutoff = time.time() - max_age
    own = re.compile(
        rf"\.{re.escape(target.name)}\.[A-Za-z0-9_]{{8}}{re.escape(suffix)}"
    )
    try:
        candidates = list(folder.glob(f".{glob.escape(target.name)}.*{suffix}"))
    except OSError:
        return
    for candidate in candidates:
        if not own.fullmatch(candidate.name):
            continue
        try:
            if candidate.is_file() and candidate.stat().st_mtime < cutoff:
                candidate.unlink()
        except OSError:
            pass


# ---------------------------------------------------------------------------
# The description's fields, checked strictly when a model file is loaded

_DESCRIPTION_KEYS = {
    "format", "format_version", "library_version", "model_class", "config",
    "preprocessing", "class_names", "provenance", "arrays_sha256",
    "description_sha256",
}
_INPUT_DTYPES = ("uint8", "float32", "float64")
_IMAGE_MODES = ("digit", "object")
# Provenance numbers measured once at the end of training; None when unknown.
_FINAL_METRICS = (
    "test_loss", "test_accuracy", "train_loss", "train_accuracy", "val_loss",
    "val_accuracy", "train_seconds",
)


def check_description(description, model, path):
    """Validate the description of a model file against its rebuilt ``model``.

    Rules: ``library_version`` is a string; no keys beyond the known ones;
    ``preprocessing`` is an object with only ``input_scale`` (finite number
    > 0), ``input_shape`` (1 to 3 positive ints whose product is the model's
    n_features), ``input_dtype`` ("uint8", "float32" or "float64"),
    ``image_mode`` ("digit" or "object") and ``invert`` ("auto" or a bool);
    ``class_names`` is null or n_classes strings; ``provenance`` is an
    object whose ``dataset``/``dataset_fingerprint`` are strings, ``seed``
    and ``epochs`` ints (``seed`` may be null), ``interrupted`` a bool,
    ``history`` an object of equally long lists of finite numbers, final
    metrics (``test_loss``, ``test_accuracy``, ...) numbers or null;
    other provenance keys may hold any JSON value.

    Raises
    ------
    ModelFileError
        Naming ``path``, the field, what was expected and what was found.
    """
    problem = _description_problem(description, _model_sizes(model))
    if problem is not None:
        field, text = problem
        raise ModelFileError(
            f"{path}: description field {field}: {text}; the file is damaged or "
            "was edited"
        )


def _description_problem(description, sizes):
    """The first broken rule as (field, explanation), or None."""
    unknown = sorted(set(description) - _DESCRIPTION_KEYS)
    if unknown:
        return unknown[0], f"unknown key; expected only {sorted(_DESCRIPTION_KEYS)}"
    version = description.get("library_version")
    if version is not None and not isinstance(version, str):
        return "library_version", f"expected a string, found {_short(version)}"
    n_features, n_classes = sizes
    for check in (_preprocessing_problem, _class_names_problem):
        problem = check(description, n_features, n_classes)
        if problem is not None:
            return problem
    return _provenance_problem(description.get("provenance", {}))


def _preprocessing_problem(description, n_features, n_classes):
    found = description.get("preprocessing", {})
    if not isinstance(found, dict):
        return "preprocessing", f"expected an object, found {_short(found)}"
    checks = {
        "input_scale": _input_scale_problem,
        "input_shape": lambda value: _input_shape_problem(value, n_features),
        "input_dtype": lambda value: _choice_problem(value, _INPUT_DTYPES),
        "image_mode": lambda value: _choice_problem(value, _IMAGE_MODES),
        "invert": _invert_problem,
    }
    for key, value in found.items():
        if key not in checks:
            return f"preprocessing.{key}", f"unknown key; expected {sorted(checks)}"
        text = checks[key](value)
        if text is not None:
            return f"preprocessing.{key}", text
    return None


def _input_scale_problem(value):
    if not _is_finite(value) or value <= 0:
        return f"expected a finite number > 0 (such as 1/255), found {_short(value)}"
    return None


def _input_shape_problem(value, n_features):
    if not _is_int_list(value) or not 1 <= len(value) <= 3 or min(value) < 1:
        return f"expected a list of 1 to 3 positive ints, found {_short(value)}"
    if n_features is not None and math.prod(value) != n_features:
        return (
            f"{value} holds {math.prod(value)} values per sample but the model "
            f"takes {n_features} features"
        )
    return None


def _choice_problem(value, allowed):
    if not isinstance(value, str) or value not in allowed:
        return f"expected one of {list(allowed)}, found {_short(value)}"
    return None


def _invert_problem(value):
    if value != "auto" and not isinstance(value, bool):
        return f"expected 'auto', true or false, found {_short(value)}"
    return None


def _class_names_problem(description, n_features, n_classes):
    names = description.get("class_names")
    if names is None:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return "class_names", f"expected a list of strings, found {_short(names)}"
    if n_classes is not None and len(names) != n_classes:
        return (
            "class_names",
            f"expected {n_classes} names (one per class), found {len(names)}",
        )
    return None


def _provenance_problem(provenance):
    if not isinstance(provenance, dict):
        return "provenance", f"expected an object, found {_short(provenance)}"
    checks = {
        "dataset": lambda v: isinstance(v, str),
        "dataset_fingerprint": lambda v: isinstance(v, str),
        "seed": lambda v: v is None or _is_int(v),
        "epochs": lambda v: _is_int(v) and v >= 0,
        "interrupted": lambda v: isinstance(v, bool),
        **{key: _is_metric for key in _FINAL_METRICS},
    }
    expected = {
        "dataset": "a string", "dataset_fingerprint": "a string",
        "seed": "an int or null", "epochs": "an int >= 0",
        "interrupted": "true or false",
    }
    for key, check in checks.items():
        if key in provenance and not check(provenance[key]):
            what = expected.get(key, "a finite number or null")
            return f"provenance.{key}", f"expected {what}, found " \
                f"{_short(provenance[key])}"
    if "history" in provenance:
        return _history_problem(provenance["history"])
    return None


def _history_problem(history):
    if not isinstance(history, dict):
        return "provenance.history", f"expected an object, found {_short(history)}"
    lengths = {}
    for key, values in history.items():
        field = f"provenance.history.{key}"
        if not isinstance(values, list) or not all(map(_is_finite, values)):
            return field, f"expected a list of finite numbers, found {_short(values)}"
        lengths[key] = len(values)
    if len(set(lengths.values())) > 1:
        return "provenance.history", (
            f"expected lists of one length (one value per epoch), found lengths "
            f"{lengths}"
        )
    return None


def _model_sizes(model):
    """(n_features, n_classes) of a built model; None where it cannot tell."""
    n_features = getattr(model, "n_features_in_", None)
    if n_features is None:
        shape = getattr(model, "input_shape", None)
        if isinstance(shape, (tuple, list)) and _is_int_list(list(shape)):
            n_features = math.prod(shape)
        else:
            n_features = getattr(model, "n_features", None)
    classes = getattr(model, "classes_", None)
    try:
        n_classes = len(classes) if classes is not None else model.n_classes
    except (AttributeError, TypeError, ValueError):
        n_classes = None
    return (
        n_features if _is_int(n_features) else None,
        n_classes if _is_int(n_classes) else None,
    )


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value):
    """A number (not a bool) that converts to a finite float."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int beyond the float range
        return False


def _is_metric(value):
    return value is None or _is_finite(value)


def _short(value):
    text = json.dumps(value) if _is_json_plain(value) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_json_plain(value):
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _to_json(value):
    """``value`` as plain JSON types (NumPy scalars and arrays, paths converted)."""
    return json.loads(json.dumps(value, default=_json_default))


# ---------------------------------------------------------------------------
# Reading, step by step; every failure is a ModelFileError naming the problem


def _read_bytes(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise ModelFileError(f"model file not found: {path}") from None
    except IsADirectoryError:
        raise ModelFileError(f"expected a model file, got a folder: {path}") from None
    except OSError as error:
        message = f"cannot read model file {path}: {error.strerror}"
        raise ModelFileError(message) from None


def _parse_header(data, path):
    """Return the header dict and the offset where tensor bytes start."""
    if len(data) < 8:
        _refuse_foreign(data, path)
        raise ModelFileError(
            f"{path} is truncated or not a model file: {len(data)} bytes, "
            "fewer than the 8-byte header length"
        )
    (header_size,) = struct.unpack("<Q", data[:8])
    if header_size > len(data) - 8 or header_size > _MAX_HEADER_BYTES:
        _refuse_foreign(data, path)
        raise ModelFileError(
            f"{path} is truncated or not a model file: its header declares "
            f"{header_size} bytes but the file holds {len(data)} bytes in all"
        )
    try:
        header = json.loads(data[8 : 8 + header_size].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        _refuse_foreign(data, path)
        raise ModelFileError(
            f"{path} is damaged or not a model file: its header is not valid JSON"
        ) from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path} is damaged: its header is not a JSON object")
    _check_spans(header, len(data) - 8 - header_size, path)
    return header, 8 + header_size


def _refuse_foreign(data, path):
    """Name the format of a file that is no safetensors file but a known other.

    Only called once the header failed to parse: a valid header length may
    start with the same bytes.
    """
    if data[:1] == b"\x80" or data[:2] == b"PK":
        kind = "a pickle" if data[:1] == b"\x80" else "a zip archive (PyTorch?)"
        raise ModelFileError(
            f"{path} looks like {kind}, not a model file; {_PICKLE_HINT}"
        )


def _check_spans(header, data_size, path):
    """Each tensor's shape must match its byte span; the spans must tile the data."""
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) != _ENTRY_KEYS:
            raise ModelFileError(f"{path} is damaged: bad header entry for {name!r}")
        dtype = _DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
        if dtype is None:
            raise ModelFileError(
                f"{path}: array {name!r} has unsupported dtype {entry['dtype']!r}; "
                f"expected one of {', '.join(_DTYPES)}"
            )
        shape, offsets = entry["shape"], entry["data_offsets"]
        if not _is_shape(shape):
            raise ModelFileError(f"{path} is damaged: bad shape {shape!r} for {name!r}")
        if not _is_int_list(offsets) or len(offsets) != 2:
            raise ModelFileError(f"{path} is damaged: bad offsets for {name!r}")
        begin, end = offsets
        if not 0 <= begin <= end <= data_size:
            raise ModelFileError(
                f"{path} is truncated: array {name!r} spans bytes {begin}..{end} "
                f"but only {data_size} bytes of array data follow the header"
            )
        if math.prod(shape) * dtype.itemsize != end - begin:
            raise ModelFileError(
                f"{path} is damaged: array {name!r} of shape {tuple(shape)} needs "
                f"{math.prod(shape) * dtype.itemsize} bytes, "
                f"its span holds {end - begin}"
            )
        spans.append((begin, end))
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise ModelFileError(
                f"{path} is damaged: array byte spans overlap or leave gaps"
            )
        position = end
    if position != data_size:
        raise ModelFileError(
            f"{path} is damaged: {data_size - position} unexplained bytes "
            "after the arrays"
        )


def _parse_description(header, path, expected_format):
    metadata = header.get("__metadata__")
    text = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    if not isinstance(text, str):
        raise ModelFileError(
            f"{path} is a safetensors file without a softmaxreg description; "
            "only files written by softmaxreg.save_model can be loaded"
        )
    try:
        description = json.loads(text)
    except (ValueError, RecursionError):
        message = f"{path} is damaged: its description is not valid JSON"
        raise ModelFileError(message) from None
    if not isinstance(description, dict):
        raise ModelFileError(f"{path} is damaged: its description is not a JSON object")
    if description.get("format") != expected_format:
        raise ModelFileError(
            f"{path}: expected format {expected_format!r}, "
            f"found {description.get('format')!r}"
        )
    _check_version(description.get("format_version"), path)
    return description


def _check_version(version, path):
    if version is None:
        raise ModelFileError(f"{path}: the description has no 'format_version'")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(
            f"{path}: 'format_version' must be a positive integer, found {version!r}"
        )
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written in format version {version} by a newer softmaxreg; "
            f"this version ({_library_version()}) reads up to {FORMAT_VERSION}: "
            "upgrade softmaxreg to load it"
        )


def _decode_tensors(data, header, data_start, path):
    # The spans were checked against the file's size, so the library's
    # allocations are bounded by it; the library checks the rest again.
    from safetensors.numpy import load

    try:
        tensors = load(data)
    except Exception as error:  # the library's own error types vary by version
        raise ModelFileError(f"{path} is damaged: {_one_line(error)}") from None
    # copies: writable arrays in native byte order, independent of ``data``
    return {
        name: np.array(array, dtype=array.dtype.newbyteorder("="))
        for name, array in tensors.items()
    }


def _check_declared_shapes(class_name, config, tensors, path):
    """Compare a Sequential's Dense weight shapes, implied by its config, with the file.

    ``Sequential.from_config`` allocates the layers' weights when the input
    shape is known, so an edited ``units`` could otherwise ask for terabytes
    before ``set_weights_dict`` sees that the arrays do not fit.
    """
    if class_name != "Sequential":
        return
    for name, shape in _dense_shapes(config).items():
        found = tensors.get(name)
        if found is None or found.shape != shape:
            found_text = "no such array" if found is None else f"{found.shape}"
            raise ModelFileError(
                f"{path}: weight {name}: the description implies shape {shape}, "
                f"the file holds {found_text}"
            )


def _dense_shapes(config):
    """Array name -> shape of each Dense layer of a Sequential config.

    Empty when the config is too malformed to tell; ``from_config`` then
    refuses it before allocating anything.
    """
    shape, layers = config.get("input_shape"), config.get("layers")
    if not _is_int_list(shape) or not isinstance(layers, list):
        return {}
    features, shapes = math.prod(shape), {}
    for index, entry in enumerate(layers):
        kind = entry.get("class_name") if isinstance(entry, dict) else None
        if kind in _SHAPE_KEEPING_LAYERS:
            continue
        if kind != "Dense":
            return {}  # NOTE: unknown here; from_config refuses or builds it
        layer = entry.get("config")
        units = layer.get("units") if isinstance(layer, dict) else None
        if not _is_int_list([units]):
            return {}
        shapes[f"layers.{index}.kernel"] = (features, units)  # (n_in, units)
        if layer.get("use_bias", True) is not False:
            shapes[f"layers.{index}.bias"] = (units,)
        features = units
    return shapes


def _resolve_model_class(name, path):
    target = _MODEL_CLASSES.get(name) if isinstance(name, str) else None
    if target is None:
        raise ModelFileError(
            f"{path}: unknown model class {name!r}; model files may name only "
            f"{', '.join(sorted(_MODEL_CLASSES))} (nothing named in a file is imported)"
        )
    if not isinstance(target, str):
        return target
    import importlib

    module_name, attribute = target.split(":")
    return getattr(importlib.import_module(module_name), attribute)


# ---------------------------------------------------------------------------
# Small helpers


def _is_shape(value):
    if not _is_int_list(value) or len(value) > _MAX_RANK:
        return False
    return min(value, default=0) >= 0


def _is_int_list(value):
    return isinstance(value, list) and all(
        isinstance(item, int) and not isinstance(item, bool) for item in value
    )


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(
        f"cannot store a {type(value).__name__} in a model file's description"
    )


def _one_line(error):
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _library_version():
    from softmaxreg import __version__

    return __version__


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_folder(folder):
    # Makes the rename itself durable; not possible on every platform.
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
