"""The finite-difference checker itself: it must find right gradients right and wrong ones wrong."""

import numpy as np
import pytest

from minireason.nn.gradcheck import check_gradients, numerical_gradient, rel_error


def test_numerical_gradient_of_known_functions():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4))
    # scalar f = sum(x^3): gradient 3 x^2
    g = numerical_gradient(lambda: (x**3).sum(), x)
    np.testing.assert_allclose(g, 3 * x**2, rtol=1e-8, atol=1e-8)
    # array f = sin(x) with upstream dout: gradient cos(x) * dout
    dout = rng.normal(size=x.shape)
    g = numerical_gradient(lambda: np.sin(x), x, dout)
    np.testing.assert_allclose(g, np.cos(x) * dout, rtol=1e-8, atol=1e-8)


def test_input_is_restored_after_checking():
    x = np.linspace(-1, 1, 6)
    before = x.copy()
    numerical_gradient(lambda: np.exp(x).sum(), x)
    np.testing.assert_array_equal(x, before)


def test_check_gradients_flags_a_wrong_gradient():
    rng = np.random.default_rng(1)
    W = rng.normal(size=(4, 3))
    x = rng.normal(size=(5, 4))
    dout = rng.normal(size=(5, 3))
    right = {"W": x.T @ dout, "x": dout @ W.T}
    wrong = {"W": -(x.T @ dout), "x": dout @ W.T}  # a sign error in dW
    ok = check_gradients(lambda: x @ W, {"W": W, "x": x}, right, dout)
    bad = check_gradients(lambda: x @ W, {"W": W, "x": x}, wrong, dout)
    assert max(ok.values()) < 1e-8
    assert bad["W"] > 0.5 and bad["x"] < 1e-8


def test_rel_error_definition_and_errors():
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error([3.0, 4.0], [3.0, 4.0]) == 0.0
    # ||a-b|| / (||a|| + ||b||) = 1 / (5 + 5)
    assert rel_error([3.0, 4.0], [3.0, 5.0]) == pytest.approx(1 / (5 + np.hypot(3, 5)))
    with pytest.raises(ValueError, match="shapes differ"):
        rel_error(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="float64"):
        numerical_gradient(lambda: 0.0, np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="no analytic gradient given for 'b'"):
        check_gradients(lambda: 0.0, {"b": np.zeros(2)}, {})
