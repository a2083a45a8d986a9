"""scikit-learn's common estimator checks, run on SoftmaxRegression.

scikit-learn is a test dependency only; the estimator implements the contract
(get_params, set_params, tags, validation messages) on its own.
"""

import warnings

import pytest

sklearn_checks = pytest.importorskip("sklearn.utils.estimator_checks")

from softmaxreg.estimator import SoftmaxRegression  # noqa: E402

# Collecting the checks warns that the estimator does not inherit from
# scikit-learn's BaseEstimator: deliberate, as scikit-learn is no run-time
# dependency. Only that one warning is silenced.
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message="Estimator SoftmaxRegression does not inherit",
        category=UserWarning,
    )
    parametrized = sklearn_checks.parametrize_with_checks(
        [SoftmaxRegression()],
        expected_failed_checks=lambda estimator: {
            "check_estimators_unfitted": (
                "demands scikit-learn's own NotFittedError class; the estimator "
                "raises softmaxreg.errors.NotFittedError (a ValueError), tested in "
                "test_estimator.py"
            ),
        },
    )


# scikit-learn's check for a column-vector y records warnings inside its own
# catch_warnings block; our DataConversionWarning is not scikit-learn's class, so
# without this mark the suite-wide "error" filter would raise it instead.
@pytest.mark.filterwarnings("always::softmaxreg.estimator.DataConversionWarning")
@parametrized
def test_sklearn_common_checks(estimator, check):
    check(estimator)
