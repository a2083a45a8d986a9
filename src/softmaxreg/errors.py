"""Exception types shared by the whole library.

Every error a user can cause derives from :class:`SoftmaxregError`, and also from
the matching built-in (``ValueError``, ``FileNotFoundError``...) so that ordinary
``except ValueError`` code keeps working. The command line turns any of them
into a one-line message and exit code 2.
"""


class SoftmaxregError(Exception):
    """Base class of every error caused by the user's input or files."""


class DataError(SoftmaxregError, ValueError):
    """A dataset file or an array given by the user is malformed."""


class ChecksumError(DataError):
    """A file's SHA-256 digest differs from the one registered for it."""


class DatasetNotFoundError(SoftmaxregError, FileNotFoundError):
    """A dataset was found in none of the places looked in, and could not be downloaded."""


class DownloadError(SoftmaxregError, OSError):
    """Every mirror of a file failed."""


class ModelFileError(SoftmaxregError, ValueError):
    """A model file is missing, truncated, tampered with or of an unknown format."""


class ImageError(SoftmaxregError, ValueError):
    """An input image cannot be decoded or holds no digit."""


class TrainingError(SoftmaxregError, RuntimeError):
    """Training cannot go on (for example, the loss became NaN or infinite)."""


class NotFittedError(SoftmaxregError, ValueError):
    """A model was used before being trained."""


class MissingDependencyError(SoftmaxregError, ImportError):
    """An optional extra (such as matplotlib for reports) is not installed."""
