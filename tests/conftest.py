"""Fixtures shared by the whole test suite.

Real-data tests find MNIST and Fashion-MNIST through ``SOFTMAXREG_DATA``. On a
developer's machine without it they skip; under CI (``CI=true``) a missing data
folder is an error, so the real-data checks can never pass by silently skipping.
"""

import os
from pathlib import Path

import pytest


def _real_data_dir():
    value = os.environ.get("SOFTMAXREG_DATA")
    if value and (Path(value) / "mnist").is_dir():
        return Path(value)
    message = (
        "real MNIST not available: set SOFTMAXREG_DATA to a folder holding "
        f"mnist/ and fashion-mnist/ (got {value!r})"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def real_data_dir():
    """The folder holding the real ``mnist/`` and ``fashion-mnist/`` IDX files."""
    return _real_data_dir()


@pytest.fixture(scope="session")
def mnist(real_data_dir):
    """Real MNIST as uint8 arrays: ``((x_train, y_train), (x_test, y_test))``."""
    from softmaxreg import datasets

    return datasets.load("mnist", data_dir=real_data_dir, download=False)


def _hypothesis_profiles():
    """Under CI the property-based tests draw the same examples on every run."""
    from hypothesis import settings

    settings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI"):
        settings.load_profile("ci")


_hypothesis_profiles()
