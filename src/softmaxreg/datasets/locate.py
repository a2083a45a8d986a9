"""Where dataset files are looked for, in order.

1. an explicit ``data_dir`` (the CLI's ``--data-dir``): ``data_dir/<name>/`` or
   ``data_dir`` itself. It must exist (:func:`check_data_dir`): a folder
   named on purpose that is missing is an error, not a reason to look
   elsewhere;
2. the folder named by ``SOFTMAXREG_DATA``: ``$SOFTMAXREG_DATA/<name>/``. As an
   environment default it may be missing; the search goes on, and a
   not-found message mentions it;
3. the user cache: ``$XDG_CACHE_HOME/softmaxreg/<name>/``, else
   ``~/.cache/softmaxreg/<name>/`` (the only place downloads go to, and the
   only place a corrupt file is ever deleted from);
4. system folders such as ``/usr/share/datasets/<name>/`` (Debian's
   ``dataset-fashion-mnist`` installs there).

Each file may be stored raw or gzip-compressed (``name`` or ``name.gz``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetNotFoundError

# Module attribute so tests can point it elsewhere.
SYSTEM_DIRS = [Path("/usr/share/datasets"), Path("/usr/local/share/datasets")]


@dataclass(frozen=True)
class Place:
    """One folder that may hold a dataset's files.

    Attributes
    ----------
    origin : str
        Why it is searched: ``"data_dir"``, ``"SOFTMAXREG_DATA"``, ``"cache"``
        or ``"system"``.
    folder : Path
        The folder itself.
    """

    origin: str
    folder: Path

    @property
    def is_cache(self) -> bool:
        """True for the user cache, the only place files are written or removed."""
        return self.origin == "cache"

    def describe(self) -> str:
        return f"{self.folder} ({self.origin})"


def cache_root() -> Path:
    """The softmaxreg user cache folder (it may not exist yet)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "softmaxreg"


def cache_place(spec) -> Place:
    """The cache folder of dataset ``spec``."""
    return Place("cache", cache_root() / spec.name)


def places(spec, data_dir=None) -> list[Place]:
    """Every folder searched for ``spec``, in search order."""
    names = [spec.name, *spec.aliases]
    found = []
    if data_dir is not None:
        root = Path(os.fspath(data_dir)).expanduser()
        found += _named_folders("data_dir", root, names)
        found.append(Place("data_dir", root))
    env = os.environ.get("SOFTMAXREG_DATA")
    if env:
        found += _named_folders("SOFTMAXREG_DATA", Path(env).expanduser(), names)
    found.append(cache_place(spec))
    for system_dir in SYSTEM_DIRS:
        found += _named_folders("system", Path(system_dir), names)
    return found


def _named_folders(origin, root, names):
    """``root/<name>``, plus ``root/<alias>`` for aliases that exist on disk."""
    folders = [Place(origin, root / names[0])]
    folders += [Place(origin, root / a) for a in names[1:] if (root / a).is_dir()]
    return folders


def find_file(folder: Path, file_spec) -> Path | None:
    """The stored copy of ``file_spec`` in ``folder`` (raw or ``.gz``), or None."""
    for candidate in (folder / file_spec.name, folder / (file_spec.name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def check_data_dir(data_dir) -> None:
    """Refuse an explicit ``data_dir`` that is not an existing folder.

    An explicit folder is a promise from the caller; silently searching
    ``$SOFTMAXREG_DATA`` or the cache instead would hide a typo.
    """
    if data_dir is None:
        return
    root = Path(os.fspath(data_dir)).expanduser()
    if root.is_dir():
        return
    what = "not a folder" if root.exists() else "no such folder"
    raise DatasetNotFoundError(
        f"data_dir {root}: {what}; pass (CLI: --data-dir) an existing folder "
        "holding <dataset>/ or the dataset's files, or leave it out to search "
        "SOFTMAXREG_DATA and the cache"
    )


def missing_env_note() -> str:
    """A note for not-found messages when ``SOFTMAXREG_DATA`` names no folder."""
    env = os.environ.get("SOFTMAXREG_DATA")
    if not env or Path(env).expanduser().is_dir():
        return ""
    return f" (note: SOFTMAXREG_DATA={env} is not an existing folder)"


def find_files(place: Place, spec, roles=None) -> dict:
    """Map each role of ``spec`` to its file in ``place`` (missing roles omitted).

    Only ``roles`` are looked for when given; all of the spec's otherwise.
    """
    found = {}
    for file_spec in spec.files:
        if roles is not None and file_spec.role not in roles:
            continue
        path = find_file(place.folder, file_spec)
        if path is not None:
            found[file_spec.role] = path
    return found


def locate(spec, data_dir=None, roles=None):
    """The first place holding all files of ``spec`` (or those of ``roles``).

    Returns
    -------
    (Place, dict) or (None, None)
        The place and its files by role, or ``(None, None)`` when no place
        holds all of them.
    """
    wanted = len(spec.files) if roles is None else len(roles)
    for place in places(spec, data_dir):
        files = find_files(place, spec, roles)
        if len(files) == wanted:
            return place, files
    return None, None
