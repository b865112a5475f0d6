"""The heads follow scikit-learn's estimator contract, checked with scikit-learn's own checks.

The spam, classify and image heads are stock scikit-learn estimators (``models.classify.make_head``):
they take ``(n, dim)`` arrays, so the full ``check_estimator`` suite runs on them.

The NER heads (``TokenLogisticRegression``, ``TorchTokenClassifier``) take ragged input, a list of
``(n_words, dim)`` arrays with a list of tag sequences as ``y``: the checks that fit on a 2-D array
(``check_fit2d_*``, ``check_dtype_object``, ``check_n_features_in``, ``check_dont_overwrite_parameters``
and the rest of ``check_estimator``) do not apply to them. The parameter and fitted-state checks do,
and run here. The fine-tuned heads need an encoder's weights to be constructed, so they are not
default-constructible; their fitted-state contract is the same ``check_is_fitted`` call.
"""

from __future__ import annotations

import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import (
    check_estimators_unfitted,
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
    parametrize_with_checks,
)

from models.classify import make_head
from models.tagging import TokenLogisticRegression, TorchTokenClassifier

RAGGED_CHECKS = (
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_get_params_invariance,
    check_set_params,
    check_estimators_unfitted,
)


# A Pipeline fits the estimators in its ``steps`` parameter in place: scikit-learn's own Pipeline fails these two checks.
PIPELINE_FAILS = {
    "check_estimators_overwrite_params": "a Pipeline fits the estimators of its steps in place",
    "check_dont_overwrite_parameters": "a Pipeline fits the estimators of its steps in place",
}


@parametrize_with_checks([make_head("logistic"), make_head("logistic-cv")], expected_failed_checks=lambda e: PIPELINE_FAILS)
def test_array_heads_pass_scikit_learns_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("check", RAGGED_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("cls", [TokenLogisticRegression, TorchTokenClassifier], ids=lambda c: c.__name__)
def test_ragged_input_heads_pass_the_applicable_checks(cls, check):
    check(cls.__name__, cls())


@pytest.mark.parametrize("cls", [TokenLogisticRegression, TorchTokenClassifier], ids=lambda c: c.__name__)
def test_predict_before_fit_is_not_fitted_error(cls):
    import numpy as np

    with pytest.raises(NotFittedError, match="not fitted yet"):
        cls().predict([np.zeros((3, 4), np.float32)])
