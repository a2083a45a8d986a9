"""Load a registered dataset from the first place holding it, or download it.

Every file is verified against the registry (magic, size, SHA-256 of the
uncompressed content) while it is streamed into its array. A file that passed
is remembered for the rest of the process by its identity on disk (device,
inode, size, modification time), so loading it again skips the hash.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, DatasetNotFoundError, DownloadError
from . import locate as _locate
from .idx import read_idx
from .registry import ROLES, get_spec, names

# (device, inode, size, mtime_ns) -> SHA-256 it verified against
_VERIFIED: dict[tuple, str] = {}


SPLITS = ("train", "test")


def load(name, data_dir=None, download=True, split=None):
    """Load dataset ``name`` (or one split of it) as uint8 arrays.

    Parameters
    ----------
    name : str
        ``"mnist"`` or ``"fashion-mnist"`` (``"fashion_mnist"`` also accepted).
    data_dir : path-like, optional
        Folder searched first, holding ``<name>/`` or the files themselves.
        When given, it must be an existing folder: a missing one is an error
        at once, with no fallback to ``$SOFTMAXREG_DATA`` or the cache.
    download : bool
        Download from the registered mirrors into the user cache when no
        place holds the files.
    split : {None, "train", "test"}
        ``"train"`` or ``"test"`` reads (and verifies) only that split's two
        files; None reads all four.

    Returns
    -------
    ((x_train, y_train), (x_test, y_test))
        When ``split`` is None. For MNIST: uint8 arrays of shapes
        (60000, 28, 28), (60000,), (10000, 28, 28), (10000,).
    (x, y)
        When ``split`` is ``"train"`` or ``"test"``: that split's images of
        shape (n_samples, 28, 28) and labels of shape (n_samples,).

    Raises
    ------
    ValueError
        ``split`` is not one of None, "train", "test".
    DatasetNotFoundError
        ``data_dir`` is given but is no folder; or no place holds the files
        and downloading is off or failed: the message lists every place
        looked and how to supply the files.
    DataError
        A file is malformed or fails its checksum. A bad file in the user
        cache is removed first, so that the next call downloads it afresh.
    """
    if split is not None and split not in SPLITS:
        raise ValueError(
            f"split: expected None, 'train' or 'test'; got {split!r}. Use None "
            "for both splits."
        )
    spec = get_spec(name)
    _locate.check_data_dir(data_dir)
    roles = ROLES if split is None else (f"x_{split}", f"y_{split}")
    place, files = _locate.locate(spec, data_dir, roles)
    if place is None:
        place, files = _fetch_into_cache(spec, data_dir, download, roles)
    arrays = {
        role: _read_verified(files[role], spec.file(role), place, remove_bad=True)
        for role in roles
    }
    _check_pairs(spec, files, arrays)
    if split is not None:
        return arrays[f"x_{split}"], arrays[f"y_{split}"]
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _fetch_into_cache(spec, data_dir, download, roles):
    """Download the files the cache lacks; return the cache place and its files."""
    looked = _locate.places(spec, data_dir)
    if not download:
        raise DatasetNotFoundError(_not_found_message(spec, looked, None, roles))
    from . import download as _download  # http.client and ssl load only when needed

    place = _locate.cache_place(spec)
    present = _locate.find_files(place, spec, roles)
    missing = [spec.file(role) for role in roles if role not in present]
    try:
        _download.download_files(spec, missing, place.folder)
    except DownloadError as exc:
        message = _not_found_message(spec, looked, exc, roles)
        raise DatasetNotFoundError(message) from None
    return place, _locate.find_files(place, spec, roles)


def _not_found_message(spec, looked, download_error, roles=ROLES):
    """One line: every place looked, why downloading did not help, the fix."""
    file_names = ", ".join(spec.file(role).name + "[.gz]" for role in roles)
    folders = []
    for place in looked:
        present = _locate.find_files(place, spec, roles)
        note = f" [{len(present)} of {len(roles)} files]" if present else ""
        folders.append(place.describe() + note)
    env_note = _locate.missing_env_note()
    if download_error is None:
        download_note = "downloading was turned off"
    else:
        download_note = f"download failed: {download_error}"
    return (
        f"dataset {spec.name!r} not found: looked for {file_names} in "
        f"{'; '.join(folders)}{env_note}; {download_note}. Fix: pass data_dir (CLI: "
        f"--data-dir) or set SOFTMAXREG_DATA to a folder holding {spec.name}/ "
        "with those files, or allow downloading while online (into "
        f"{_locate.cache_place(spec).folder})."
    )


def _identity(path):
    stat = os.stat(path)
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _read_verified(path, file_spec, place, *, remove_bad):
    """Read one file, checking it against the registry; see :func:`load`."""
    identity = _identity(path)
    known_good = _VERIFIED.get(identity) == file_spec.sha256
    sha256 = None if known_good else file_spec.sha256
    try:
        array = read_idx(
            path, magic=file_spec.magic, sha256=sha256, size=file_spec.size
        )
    except DataError as exc:
        if remove_bad and place.is_cache and _inside_cache(path):
            Path(path).unlink(missing_ok=True)
            reason = _FIX_BY_HAND.sub("", str(exc))  # the removal below is the fix
            raise type(exc)(
                f"{reason}; removed this bad copy from the cache, so the next "
                "run downloads it afresh"
            ) from None
        raise
    # NOTE: a file rewritten in place with the same size within one clock tick
    # of its verification keeps the same identity and is not hashed again.
    _VERIFIED[identity] = file_spec.sha256
    return array


_FIX_BY_HAND = re.compile(r"[:;,]? delete it and (download|get it) again")


def _inside_cache(path):
    """True only for files under the softmaxreg cache folder."""
    root = _locate.cache_root().resolve()
    return Path(path).resolve().is_relative_to(root)


def _check_pairs(spec, files, arrays):
    """Image and label counts must match, and labels must name known classes."""
    n_classes = len(spec.class_names)
    for split in SPLITS:
        if f"x_{split}" not in arrays:
            continue
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(images) != len(labels):
            raise DataError(
                f"{spec.name} {split}: {files[f'x_{split}']} holds {len(images)} "
                f"images but {files[f'y_{split}']} holds {len(labels)} labels; "
                "the counts must be equal (mixed-up or corrupt files?)"
            )
        if labels.size and int(labels.max()) >= n_classes:
            raise DataError(
                f"{files[f'y_{split}']}: label {int(labels.max())} is outside "
                f"0..{n_classes - 1} ({n_classes} classes in {spec.name})"
            )


@dataclass
class DatasetStatus:
    """What :func:`status` found for one dataset.

    Attributes
    ----------
    name : str
        Canonical dataset name.
    location : Path or None
        Folder holding all its files, or None when missing.
    verified : bool or None
        Whether the files passed their checks; None when not checked.
    places : list of str
        Every place looked, in search order.
    problem : str
        Why verification failed ('' when it did not).
    """

    name: str
    location: Path | None
    verified: bool | None
    places: list[str] = field(default_factory=list)
    problem: str = ""


def status(data_dir=None, verify=True):
    """Where each registered dataset is found, and whether it verifies.

    Nothing is downloaded or deleted. Verification reads every file once per
    process (about a second for MNIST).

    Returns
    -------
    list of DatasetStatus
    """
    return [_status_of(get_spec(name), data_dir, verify) for name in names()]


def _status_of(spec, data_dir, verify):
    _locate.check_data_dir(data_dir)
    looked = [place.describe() for place in _locate.places(spec, data_dir)]
    place, files = _locate.locate(spec, data_dir)
    if place is None:
        return DatasetStatus(spec.name, None, None, looked)
    if not verify:
        return DatasetStatus(spec.name, place.folder, None, looked)
    try:
        for role in ROLES:
            _read_verified(files[role], spec.file(role), place, remove_bad=False)
    except DataError as exc:
        return DatasetStatus(spec.name, place.folder, False, looked, str(exc))
    return DatasetStatus(spec.name, place.folder, True, looked)


def format_status(records):
    """Render :func:`status` records as a plain-text table, one dataset a row."""
    rows = [("dataset", "state", "location")]
    for record in records:
        state = {True: "verified", False: "CORRUPT", None: "found"}[record.verified]
        if record.location is None:
            state = "missing"
        rows.append((record.name, state, str(record.location or "-")))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in rows]
    for record in records:
        if record.problem:
            lines.append(f"{record.name}: {record.problem.splitlines()[0]}")
        if record.location is None:
            lines.append(f"{record.name} looked in: " + "; ".join(record.places))
    return "\n".join(lines)
