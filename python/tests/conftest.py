"""Shared fixtures: the device under test (``WGPU_BACKEND`` picks it) and f64 references."""

import os

# scikit-learn's check_estimator runs its array-API check only with SciPy's array-API mode,
# which is read when SciPy is first imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import logdomain  # noqa: E402

U = 2.0**-24  # float32's unit roundoff
TINY = 2.0**-126


@pytest.fixture(scope="session")
def device():
    """The default device. No adapter is a failure with the library's message (which names the
    software adapters to install), never a skip."""
    try:
        return logdomain.default_device()
    except logdomain.NoAdapterError as e:
        pytest.fail(f"no adapter for the Python tests: {e}", pytrace=False)


@pytest.fixture
def rng():
    return np.random.default_rng(20261204)


def assert_close(got, ref, bound, what=""):
    """|got - ref| <= bound elementwise, with NaN, inf and -inf required in the same places."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    special = ~np.isfinite(ref)
    np.testing.assert_array_equal(
        np.isnan(got), np.isnan(ref), err_msg=f"{what}: NaN in different places"
    )
    same = special & ~np.isnan(ref)
    np.testing.assert_array_equal(got[same], ref[same], err_msg=f"{what}: infinities differ")
    bound = np.broadcast_to(np.asarray(bound, np.float64), ref.shape)
    with np.errstate(invalid="ignore"):
        err = np.abs(got - ref)
    bad = ~special & ~(err <= bound)
    assert not bad.any(), (
        f"{what}: {bad.sum()} of {bad.size} outside the bound; worst error "
        f"{err[bad].max()} against bound {bound[bad][np.argmax(err[bad])]}"
    )
