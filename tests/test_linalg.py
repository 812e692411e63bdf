"""The dense factorisations of mlu.engine._linalg against NumPy's definitions."""

from __future__ import annotations

import numpy as np
import pytest

from mlu.engine import _linalg
from mlu.exceptions import NotPositiveDefiniteError


def _spd(p: int, seed: int = 0) -> np.ndarray:
    A = np.random.default_rng(seed).standard_normal((p, p + 3))
    return A @ A.T


def test_eigh_rebuilds_the_matrix_and_leaves_it_untouched():
    H = _spd(7)
    H[0, 1] = H[1, 0] = -3.0  # indefinite-ish entries are fine: eigh of any symmetric matrix
    before = H.copy()
    w, U = _linalg.eigh(H)
    np.testing.assert_array_equal(H, before)
    assert np.all(np.diff(w) >= 0)
    np.testing.assert_allclose(U @ np.diag(w) @ U.T, H, atol=1e-12)
    np.testing.assert_allclose(U.T @ U, np.eye(7), atol=1e-12)


def test_cholesky_solve_many_solves_every_column():
    H, damping = _spd(6), 0.1
    B = np.random.default_rng(1).standard_normal((6, 3))
    L = _linalg.cholesky(H, damping)
    X = _linalg.cholesky_solve_many(L, B)
    np.testing.assert_allclose(X, np.linalg.solve(H + damping * np.eye(6), B), rtol=1e-10)


def test_eig_pinv_solve_many_drops_the_nonpositive_eigenpairs():
    rng = np.random.default_rng(2)
    U, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    w = np.array([-1.0, 0.0, 0.5, 2.0, 3.0])
    H, damping = U @ np.diag(w) @ U.T, 0.0
    B = rng.standard_normal((5, 2))
    X = _linalg.eig_pinv_solve_many(*_linalg.eigh(H), B, damping)
    keep = U[:, 2:]
    expected = keep @ np.diag(1.0 / w[2:]) @ keep.T @ B
    np.testing.assert_allclose(X, expected, atol=1e-12)
    with pytest.raises(NotPositiveDefiniteError):
        _linalg.cholesky(H, damping)
