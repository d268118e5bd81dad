"""The seed document's section 4.3, pinned with numbers derived by hand (closed forms)."""

import math

import numpy as np
import pytest

from minireason.cli import main
from minireason.course import worked_example as we

E = math.e


def test_inputs_are_the_documents():
    assert we.WORDS == ("I", "like", "to", "read", "books", "and", "watch", "movies")
    assert we.VECTORS.shape == (8, 3)
    assert we.VECTORS[3].tolist() == [1, 1, 0]  # read
    assert we.VECTORS[6].tolist() == [1, 0, 1]  # watch
    assert we.QUERY.tolist() == [1, 0, 0]


def test_single_query_unscaled_closed_form():
    r = we.single_query(scaled=False)
    # scores q.k_i = first coordinate of each word: I, read, watch have 1; the rest 0
    np.testing.assert_array_equal(r.scores[0], [1, 0, 0, 1, 0, 0, 1, 0])
    Z = 3 * E + 5
    assert r.weights[0, 0] == pytest.approx(E / Z, abs=1e-15)  # "I"
    assert r.weights[0, 1] == pytest.approx(1 / Z, abs=1e-15)  # "like"
    # output = (e*(I + read + watch) + like + to + books + and + movies) / Z = [3e, e+4, e+3] / Z
    np.testing.assert_allclose(r.output[0], np.array([3 * E, E + 4, E + 3]) / Z, rtol=1e-14)


def test_single_query_scaled_closed_form():
    r = we.single_query(scaled=True)
    a = math.exp(1 / math.sqrt(3))
    Z = 3 * a + 5
    assert r.weights[0, 0] == pytest.approx(a / Z, abs=1e-15)
    np.testing.assert_allclose(r.output[0], np.array([3 * a, a + 4, a + 3]) / Z, rtol=1e-14)


def test_self_attention_rows_closed_form():
    r = we.self_attention(scaled=False)
    # row "read" = [1,1,0]: dot products with the eight words = [1,1,0,2,1,1,1,1]
    np.testing.assert_array_equal(r.scores[3], [1, 1, 0, 2, 1, 1, 1, 1])
    Z = E**2 + 6 * E + 1
    assert r.weights[3, 3] == pytest.approx(E**2 / Z, abs=1e-15)
    assert r.weights[3, 2] == pytest.approx(1 / Z, abs=1e-15)
    # "books" and "and" share a vector, so their rows are identical
    np.testing.assert_array_equal(r.weights[4], r.weights[5])
    np.testing.assert_allclose(r.weights.sum(1), 1.0, rtol=1e-15)
    # scaled version: row "books" = [0,1,1], scores [0,1,1,1,2,2,1,1] / sqrt(3)
    s = we.self_attention(scaled=True)
    a = math.exp(1 / math.sqrt(3))
    Zs = 1 + 5 * a + 2 * a * a
    assert s.weights[4, 4] == pytest.approx(a * a / Zs, abs=1e-15)


def test_errata_facts():
    assert we.doc_denominator() == pytest.approx(E + 2 * E**2 + 5)
    errata = {e.what: e for e in we.errata()}
    assert "undefined" in errata["the product QK^T"].why
    denom = errata["the softmax denominator"]
    assert "column 1" in denom.why and "equals no row" in denom.why
    assert "13.1548" in denom.correct  # 3e + 5
    assert "7 rows" in errata["the softmax matrix"].document
    assert "never does" in errata["the 1/sqrt(d_k) scale"].document


def test_cli_prints_correct_values_next_to_documents(capsys, tmp_path):
    png = tmp_path / "heat.png"
    assert main(["attention-example", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert f"{E / (3 * E + 5):.4f}" in out  # 0.2066, the unscaled weight on "I"
    assert "22.4964" in out  # the document's denominator e + 2e^2 + 5
    assert "Errata" in out and "0.26" in out
    assert png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
