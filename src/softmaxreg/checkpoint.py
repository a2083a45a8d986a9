"""Training checkpoints: everything needed to continue a run exactly.

A checkpoint is one safetensors file, ``checkpoint.safetensors`` in the folder
given to ``softmaxreg train --checkpoint DIR``, written atomically at the end of
each epoch. It holds the model's weights, the optimizer's state (moment
estimates, step count), the number of epochs done, the seed, the run's options
and the history so far. The epoch's shuffling is derived from ``(seed, epoch)``
by the engine, so no random-generator state needs saving: a resumed run draws
the same batches as an uninterrupted one and ends with bit-identical weights.

The file is read through the same checks as a model file
(:func:`softmaxreg.saving.read_container`), so a damaged checkpoint gives a
:class:`~softmaxreg.errors.ModelFileError`, never a crash.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from softmaxreg import saving
from softmaxreg.errors import ModelFileError

FORMAT_NAME = "softmaxreg-checkpoint"
FILE_NAME = "checkpoint.safetensors"

_WEIGHT_PREFIX = "model/"
_STATE_PREFIX = "optimizer/"


@dataclass
class Checkpoint:
    """A training run's state at the end of an epoch.

    Attributes
    ----------
    model : Sequential
        The model with its weights after ``epoch`` epochs.
    optimizer_state : object
        What the optimizer's ``get_state()`` returned: nested dicts and lists
        of arrays and scalars.
    epoch : int
        How many epochs are done (the next one to run has this index).
    seed : int
    options : dict
        The run's options (dataset, layers, optimizer, batch size...).
    history : dict
        Per-epoch lists, Keras keys.
    engine : str
        ``kernels.engine`` of the run ("compiled" or "numpy"; "" when not
        recorded): a run resumed on the other one is not bit-identical.
    """

    model: object
    optimizer_state: object
    epoch: int
    seed: int
    options: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    engine: str = ""


def checkpoint_path(directory):
    """The checkpoint file inside ``directory``."""
    return Path(directory) / FILE_NAME


def save_checkpoint(directory, checkpoint):
    """Write ``checkpoint`` into ``directory`` (created if needed), atomically.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = checkpoint.model.get_config()
    tensors = {
        _WEIGHT_PREFIX + name: array
        for name, array in checkpoint.model.get_weights_dict().items()
    }
    state_arrays = {}
    encoded_state = _encode(checkpoint.optimizer_state, state_arrays)
    tensors.update({_STATE_PREFIX + key: a for key, a in state_arrays.items()})
    description = {
        "format": FORMAT_NAME,
        "format_version": saving.FORMAT_VERSION,
        "library_version": saving._library_version(),
        "model_class": config["class_name"],
        "config": config,
        "optimizer_state": encoded_state,
        "epoch": int(checkpoint.epoch),
        "seed": int(checkpoint.seed),
        "options": checkpoint.options,
        "history": checkpoint.history,
        "engine": checkpoint.engine,
    }
    return saving.write_container(checkpoint_path(directory), tensors, description)


def load_checkpoint(directory):
    """Read the checkpoint in ``directory``.

    Returns
    -------
    Checkpoint or None
        None when the folder holds no checkpoint.

    Raises
    ------
    ModelFileError
        The checkpoint exists but is damaged or from a newer version.
    """
    path = checkpoint_path(directory)
    if not path.exists():
        return None
    tensors, description = saving.read_container(path, expected_format=FORMAT_NAME)
    weights, state_arrays = {}, {}
    for name, array in tensors.items():
        if name.startswith(_WEIGHT_PREFIX):
            weights[name[len(_WEIGHT_PREFIX) :]] = array
        elif name.startswith(_STATE_PREFIX):
            state_arrays[name[len(_STATE_PREFIX) :]] = array
        else:
            raise ModelFileError(f"{path}: unexpected array {name!r}")
    model = saving.build_model(description, weights, path)
    saving.check_digest(tensors, description, path)
    epoch, seed = description.get("epoch"), description.get("seed")
    options, history = description.get("options"), description.get("history")
    if not (_is_int(epoch) and epoch >= 0 and _is_int(seed)):
        raise ModelFileError(f"{path}: 'epoch' and 'seed' must be integers")
    if not isinstance(options, dict) or not isinstance(history, dict):
        raise ModelFileError(f"{path}: 'options' and 'history' must be objects")
    engine = description.get("engine", "")
    if engine not in ("", "compiled", "numpy"):
        raise ModelFileError(f"{path}: 'engine' must be \"compiled\" or \"numpy\"; "
                             "the file was edited or is damaged")
    state = _decode(description.get("optimizer_state"), state_arrays, path)
    return Checkpoint(model, state, epoch, seed, options, history, engine)


# ---------------------------------------------------------------------------
# Optimizer state <-> JSON with references to arrays
#
# Arrays and NumPy scalars become {"__array__": key} and are stored as tensors,
# bit for bit; Python scalars, strings and None stay in the JSON. Tuples come
# back as lists.


def _encode(value, arrays):
    if isinstance(value, (np.ndarray, np.generic)):
        key = str(len(arrays))
        arrays[key] = np.asarray(value)
        return {"__array__": key, "scalar": isinstance(value, np.generic)}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value) or "__array__" in value:
            raise TypeError("optimizer state: dict keys must be strings")
        return {k: _encode(v, arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(item, arrays) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"optimizer state: cannot store a {type(value).__name__}; "
        "expected arrays, numbers, strings, lists and dicts"
    )


def _decode(value, arrays, path):
    if isinstance(value, dict) and "__array__" in value:
        array = arrays.get(value["__array__"])
        if array is None:
            raise ModelFileError(f"{path}: optimizer state refers to a missing array")
        return array[()] if value.get("scalar") else array
    if isinstance(value, dict):
        return {k: _decode(v, arrays, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(item, arrays, path) for item in value]
    return value


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)
