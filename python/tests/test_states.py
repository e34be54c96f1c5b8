"""The log-sum-exp monoid's states: lse_state / lse_merge / lse_finish against SciPy in
float64 on the same float32 values, split in every way, with SciPy's special values."""

import numpy as np
import pytest
import scipy.special as sp

import logdomain

from conftest import TINY, U, assert_close


def lse_bound(x64, axis, pieces=1):
    """The one-shot bound 6u(|max| + |lse - max|) + 2^-126, times 1 + log2(pieces) for the
    merges (each merge rounds the scaled sum once)."""
    with np.errstate(invalid="ignore"):
        m = np.max(x64, axis=axis)
        ref = sp.logsumexp(x64, axis=axis)
        spread = np.nan_to_num(np.abs(m) + np.abs(ref - m), nan=0.0, posinf=0.0)
    return 6 * U * spread * (1 + np.log2(pieces)) + TINY


def test_state_is_twelve_bytes_of_m_s_flags(device):
    st = logdomain.lse_state(np.array([0.0, 1.0, 2.0], np.float32), device=device)
    assert st.dtype == logdomain.STATE_DTYPE and st.dtype.itemsize == 12 and st.shape == ()
    assert st["m"] == 2.0 and st["flags"] == 1
    assert abs(float(st["s"]) - (np.exp(-1) + np.exp(-2))) < 4 * U
    assert logdomain.lse_finish(st).dtype == np.float32


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2), (2, 0)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_one_shot_state(device, rng, axis, keepdims):
    x = (rng.standard_normal((5, 7, 9)) * 20).astype(np.float32)
    x64 = x.astype(np.float64)
    got = logdomain.lse_finish(logdomain.lse_state(x, axis=axis, keepdims=keepdims))
    ref = sp.logsumexp(x64, axis=axis, keepdims=keepdims)
    bound = lse_bound(x64, axis)
    assert_close(got, ref, np.reshape(bound, np.shape(ref)), "lse_finish(lse_state)")


@pytest.mark.parametrize("pieces", [2, 3, 7])
def test_any_split_merges_to_the_one_shot_result(device, rng, pieces):
    """Pieces of random sizes along the reduced axis 0 (some empty), merged left to right
    and in reverse: the SciPy result within the bound; the same pieces in the same order give
    the same bits, and a merge of two is commutative bit for bit."""
    x = (rng.standard_normal((300, 6)) * 30).astype(np.float32)
    x64 = x.astype(np.float64)
    cuts = np.sort(rng.integers(0, 301, pieces - 1))
    parts = np.split(x, cuts, axis=0)
    states = [logdomain.lse_state(p, axis=0) for p in parts]
    merged = logdomain.lse_merge(*states)
    ref = sp.logsumexp(x64, axis=0)
    assert_close(logdomain.lse_finish(merged), ref, lse_bound(x64, 0, pieces), "merged")
    again = logdomain.lse_merge(*[logdomain.lse_state(p, axis=0) for p in parts])
    assert merged.tobytes() == again.tobytes()
    backwards = logdomain.lse_merge(*states[::-1])
    assert_close(logdomain.lse_finish(backwards), ref, lse_bound(x64, 0, pieces), "reversed")
    ab = logdomain.lse_merge(states[0], states[1])
    ba = logdomain.lse_merge(states[1], states[0])
    assert ab.tobytes() == ba.tobytes()


def test_special_values_survive_merging(device):
    """NaN anywhere gives NaN, +inf gives +inf, only -inf (or nothing) gives -inf; an empty
    piece is the identity."""
    cols = np.array(
        [
            [0.0, 1.0, np.nan, np.inf, -np.inf, 3e38],
            [5.0, -np.inf, 2.0, 1.0, -np.inf, 3e38],
        ],
        np.float32,
    )
    top = logdomain.lse_state(cols[:1], axis=0)
    bottom = logdomain.lse_state(cols[1:], axis=0)
    empty = logdomain.lse_state(cols[:0], axis=0)
    got = logdomain.lse_finish(logdomain.lse_merge(top, empty, bottom))
    ref = sp.logsumexp(cols.astype(np.float64), axis=0)
    ref[-1] = np.float64(np.float32(3e38)) + np.log(2)  # SciPy's float64 does not overflow
    assert_close(got, ref, 6 * U * np.nan_to_num(np.abs(ref), posinf=0, neginf=0) + TINY)
    assert np.isnan(got[2]) and got[3] == np.inf and got[4] == -np.inf
    assert np.all(logdomain.lse_finish(empty) == -np.inf)
    assert logdomain.lse_merge(top, empty).tobytes() == top.tobytes()


def test_merge_broadcasts_and_checks(device):
    a = logdomain.lse_state(np.zeros((4, 3), np.float32), axis=0)  # (3,)
    b = logdomain.lse_state(np.zeros((2, 1), np.float32), axis=0)  # (1,)
    got = logdomain.lse_finish(logdomain.lse_merge(a, b))
    assert got.shape == (3,)
    assert_close(got, np.full(3, np.log(6.0)), 8 * U * np.log(6.0))
    with pytest.raises(TypeError, match="STATE_DTYPE"):
        logdomain.lse_merge(a, np.zeros(3))
    with pytest.raises(TypeError, match="at least one"):
        logdomain.lse_merge()
    with pytest.raises(ValueError):
        logdomain.lse_merge(a, logdomain.lse_state(np.zeros((2, 2), np.float32), axis=0))
