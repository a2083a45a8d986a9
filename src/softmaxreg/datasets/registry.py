"""The registry of known datasets: files, checksums, class names, licence, mirrors.

Checksums and sizes are those of the *uncompressed* IDX files: the ``.gz`` bytes
differ with the compressor that made them, the content does not.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..errors import DataError

IMAGES_MAGIC = 0x00000803  # uint8, 3 dimensions (n_samples, height, width)
LABELS_MAGIC = 0x00000801  # uint8, 1 dimension (n_samples,)


@dataclass(frozen=True)
class FileSpec:
    """One IDX file of a dataset.

    Attributes
    ----------
    name : str
        File name without ``.gz`` (the mirrors serve ``name + ".gz"``).
    sha256 : str
        Hex SHA-256 of the uncompressed file.
    size : int
        Size in bytes of the uncompressed file.
    role : str
        One of ``"x_train"``, ``"y_train"``, ``"x_test"``, ``"y_test"``.
    """

    name: str
    sha256: str
    size: int
    role: str

    @property
    def magic(self) -> int:
        """The IDX magic number this file must start with."""
        return IMAGES_MAGIC if self.role.startswith("x_") else LABELS_MAGIC


@dataclass(frozen=True)
class DatasetSpec:
    """Everything known about one dataset before touching the disk.

    Attributes
    ----------
    name : str
        Canonical name, also the folder name under a data directory.
    class_names : list of str
        Human-readable name of each class, indexed by label.
    files : tuple of FileSpec
        The four IDX files (train images, train labels, test images, test labels).
    licence : str
        Licence of the data.
    mirrors : tuple of str
        Base URLs ending in ``/``, tried in order; a file's URL is
        ``mirror + file.name + ".gz"``.
    homepage : str
        Where the dataset is described.
    aliases : tuple of str
        Other accepted spellings of ``name``.
    image_mode : {"digit", "object"}
        How a user's own picture is made to look like this dataset's images
        (see :func:`softmaxreg.preprocessing.prepare_image`): ``"digit"``
        scales the ink into a 20-pixel box centred by centre of mass, as
        MNIST; ``"object"`` scales the object to fill 28 pixels, centred by
        its bounding box, as Fashion-MNIST.
    """

    name: str
    class_names: list[str]
    files: tuple[FileSpec, ...]
    licence: str
    mirrors: tuple[str, ...]
    homepage: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)
    image_mode: str = "digit"

    def file(self, role: str) -> FileSpec:
        """The file playing ``role`` (``"x_train"``, ``"y_train"``, ...)."""
        for spec in self.files:
            if spec.role == role:
                return spec
        raise KeyError(role)


ROLES = ("x_train", "y_train", "x_test", "y_test")
IMAGE_MODES = ("digit", "object")

MNIST = DatasetSpec(
    name="mnist",
    class_names=[str(digit) for digit in range(10)],
    files=(
        FileSpec(
            "train-images-idx3-ubyte",
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            47040016,
            "x_train",
        ),
        FileSpec(
            "train-labels-idx1-ubyte",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            60008,
            "y_train",
        ),
        FileSpec(
            "t10k-images-idx3-ubyte",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            7840016,
            "x_test",
        ),
        FileSpec(
            "t10k-labels-idx1-ubyte",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            10008,
            "y_test",
        ),
    ),
    licence="CC BY-SA 3.0 (Yann LeCun, Corinna Cortes, Christopher J. C. Burges)",
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    homepage="http://yann.lecun.com/exdb/mnist/",
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    class_names=[
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
    files=(
        FileSpec(
            "train-images-idx3-ubyte",
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            47040016,
            "x_train",
        ),
        FileSpec(
            "train-labels-idx1-ubyte",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            60008,
            "y_train",
        ),
        FileSpec(
            "t10k-images-idx3-ubyte",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            7840016,
            "x_test",
        ),
        FileSpec(
            "t10k-labels-idx1-ubyte",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            10008,
            "y_test",
        ),
    ),
    licence="MIT (Zalando SE)",
    mirrors=(
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    aliases=("fashion_mnist", "fashionmnist"),
    image_mode="object",
)

_REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to the registry (replacing one of the same name) and return it.

    Used for the built-in datasets and by tests that serve a small generated
    dataset; the file roles must be exactly the four of :data:`ROLES`.
    """
    roles = sorted(file.role for file in spec.files)
    if roles != sorted(ROLES):
        raise DataError(
            f"dataset {spec.name!r}: files must have the roles {list(ROLES)}, "
            f"got {roles}"
        )
    if spec.image_mode not in IMAGE_MODES:
        raise DataError(
            f"dataset {spec.name!r}: image_mode must be one of {list(IMAGE_MODES)}, "
            f"got {spec.image_mode!r}"
        )
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a dataset from the registry (no error when it is absent)."""
    _REGISTRY.pop(name, None)


def names() -> list[str]:
    """Canonical names of every registered dataset, in registration order."""
    return list(_REGISTRY)


def get_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name`` (``"mnist"``, ``"fashion-mnist"``...).

    Case and ``_`` versus ``-`` do not matter. An unknown name raises
    :class:`~softmaxreg.errors.DataError` listing the known ones.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"name: expected a dataset name (str), got {type(name).__name__}"
        )
    wanted = name.strip().lower().replace("_", "-")
    for spec in _REGISTRY.values():
        spellings = {spec.name, *(alias.replace("_", "-") for alias in spec.aliases)}
        if wanted in spellings:
            return spec
    raise DataError(
        f"name: unknown dataset {name!r}; known datasets: {', '.join(_REGISTRY)}"
    )


def fingerprint(name: str) -> str:
    """A short string identifying the content of dataset ``name``, for provenance.

    It is ``"<name>:sha256:<16 hex digits>"``, the digits being the start of the
    SHA-256 of the four registered file digests joined in role order, so any
    change to any of the four files changes it.
    """
    spec = get_spec(name)
    joined = ",".join(spec.file(role).sha256 for role in ROLES)
    digest = hashlib.sha256(joined.encode("ascii")).hexdigest()
    return f"{spec.name}:sha256:{digest[:16]}"


register(MNIST)
register(FASHION_MNIST)
