"""Each kind of backend error has one HTTP status, set in ``backend.api.errors`` alone (issue #16)."""

from __future__ import annotations

import inspect

import pytest

from backend import errors
from backend.api.errors import STATUS_OF, status_of
from ml.errors import DataError, MLError, ModelError, TrainingError

KINDS = [
    kind
    for _, kind in inspect.getmembers(errors, inspect.isclass)
    if issubclass(kind, errors.ServiceError) and kind.__module__ == errors.__name__
]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.NotFoundError("gone"), 404),
        (errors.ComparisonConflictError("busy"), 409),
        (errors.InvalidInputError("bad"), 422),
        (errors.UpstreamError("away"), 502),
        (errors.UpstreamRefusedError("refused", upstream_status=404), 502),  # Label Studio's 404 is not ours
        (errors.ModelUnavailableError("no model"), 503),
        (errors.ServiceError("other"), 500),
        (ModelError("model 3: corrupt metrics"), 500),  # stored on the server: not the request's fault
        (DataError("line 3: bad tag"), 422),
        (TrainingError("no entity in the training data"), 422),
    ],
)
def test_each_error_kind_has_its_status(error: errors.ServiceError | MLError, status: int) -> None:
    assert status_of(error) == status


def test_every_client_facing_kind_is_mapped_or_inherits_a_mapping() -> None:
    """A new kind of ``ServiceError`` gets a status here, or a base that has one (else it would answer 500)."""
    unmapped = [kind.__name__ for kind in KINDS if not any(base in STATUS_OF for base in kind.__mro__)]
    assert unmapped == ["ServiceError"]


def test_no_error_class_carries_a_status_of_its_own() -> None:
    """The status lives in the one map, never on the class."""
    assert [kind.__name__ for kind in KINDS if "status_code" in vars(kind)] == []
