"""scoring.topk against a brute-force numpy reference."""

import numpy as np
import pytest

from models.scoring import csr_from_pairs, topk_dot


def _reference(U, V, bu, bi, excl_rows, excl_cols, k):
    s = U @ V.T + bu[:, None] + bi[None, :]
    s[excl_rows, excl_cols] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(s, order, 1)


@pytest.mark.parametrize("chunk_size", [None, 1, 3, 7])
def test_topk_dot_matches_brute_force_with_exclusions(chunk_size):
    rng = np.random.default_rng(0)
    U, V = rng.normal(size=(11, 4)).astype(np.float32), rng.normal(size=(13, 4)).astype(np.float32)
    bu, bi = rng.normal(size=11).astype(np.float32), rng.normal(size=13).astype(np.float32)
    rows = rng.integers(0, 11, 40)
    cols = rng.integers(0, 13, 40)
    ref_idx, ref_s = _reference(U, V, bu, bi, rows, cols, 5)
    idx, s = topk_dot(U, V, 5, user_bias=bu, item_bias=bi, exclude=csr_from_pairs(rows, cols, 11),
                      chunk_size=chunk_size, device="cpu")
    np.testing.assert_allclose(s, ref_s, rtol=1e-5, atol=1e-5)
    # same items (ties are measure-zero with random floats)
    np.testing.assert_array_equal(idx, ref_idx)
    for r, c in zip(rows, cols):
        assert c not in idx[r]
    assert (np.diff(s, axis=1) <= 0).all()


def test_topk_marks_rows_with_too_few_candidates():
    U, V = np.ones((2, 1), np.float32), np.arange(3, dtype=np.float32)[:, None]
    idx, s = topk_dot(U, V, 3, exclude=csr_from_pairs([0, 0], [1, 2], 2), device="cpu")
    assert idx[0, 0] == 0 and np.isneginf(s[0, 1:]).all()
    np.testing.assert_array_equal(idx[1], [2, 1, 0])


def test_csr_from_pairs():
    indptr, indices = csr_from_pairs([2, 0, 2], [5, 6, 7], 4)
    np.testing.assert_array_equal(indptr, [0, 1, 1, 3, 3])
    np.testing.assert_array_equal(indices, [6, 5, 7])
