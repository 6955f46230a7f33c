import numpy as np
import pytest

from mptc.approximate.construct import construct, ladder_layer, split_layer
from mptc.approximate.integer import integer_form
from mptc.approximate.rng import random_signs
from mptc.approximate.target import AffineMLP


@pytest.fixture(scope="module")
def tiny_target():
    rng = np.random.default_rng(0)
    widths = [5, 7, 6, 3]
    weights = tuple(rng.normal(size=(o, i)) / np.sqrt(i) for i, o in zip(widths, widths[1:]))
    biases = tuple(rng.normal(size=o) * 0.1 for o in widths[1:])
    return AffineMLP(weights, biases)


@pytest.fixture(scope="module")
def inputs():
    return np.random.default_rng(1).normal(size=(64, 5))


def _forward(layers, x_aug):
    h = x_aug.T
    for layer in layers:
        h = layer.forward(h)
    return h


def test_split_layer_reproduces_x(inputs):
    layer, lanes = split_layer(seed=3, inputs=6, copies=4)
    x_aug = np.concatenate([inputs, np.ones((len(inputs), 1))], axis=1)
    h = _forward([layer], x_aug)
    for j in range(5):
        pos = lanes.rows[j][lanes.valid[j]]
        neg = lanes.rows[5 + j][lanes.valid[5 + j]]
        assert pos.size and neg.size
        np.testing.assert_array_equal(h[pos[0]] - h[neg[0]], inputs[:, j])
    assert np.all(h[lanes.rows[-1][lanes.valid[-1]]] == 1.0)


def test_ladder_fed_one_gives_exact_powers_of_two():
    precision, copies = 6, 8
    split, sources = split_layer(seed=5, inputs=1, copies=copies)  # only the constant input 1
    layers, lanes = [split], {0: sources}
    for t in range(1, precision):
        layer, lanes = ladder_layer(5, len(layers) + 1, layers[-1].shape[0], lanes, t, precision, copies)
        layers.append(layer)
    h = _forward(layers, np.ones((1, 1)))[:, 0]
    for k, lane in lanes.items():
        assert lane.valid.any()
        np.testing.assert_array_equal(h[lane.rows[lane.valid]], 2.0**k)


def test_integer_form_error_halves_per_bit(tiny_target, inputs):
    reference = tiny_target(inputs)
    errors = []
    for precision in (4, 6, 8, 10):
        integer = integer_form(tiny_target, precision)
        assert all(np.abs(m).max() <= 2 ** (precision - 1) for m in integer.matrices)
        errors.append(np.abs(integer.scale * integer(inputs) - reference).max())
    assert all(b < a / 2.5 for a, b in zip(errors, errors[1:]))


@pytest.fixture(scope="module")
def ticket(tiny_target):
    return construct(tiny_target, precision=6, copies=8, candidates=6, seed=2)


def test_pruned_network_is_lambda_times_the_integer_network(ticket, inputs):
    assert ticket.inexact_neurons == 0 and ticket.depth == 1 + 3 * 6
    np.testing.assert_allclose(ticket(inputs), ticket.scale * ticket.integer(inputs), rtol=1e-12, atol=1e-12)


def test_every_kept_weight_is_an_untouched_draw(ticket):
    for index, layer in enumerate(ticket.layers, start=1):
        np.testing.assert_array_equal(layer.signs, random_signs(ticket.seed, index, layer.rows, layer.cols))
        assert len(set(zip(layer.rows.tolist(), layer.cols.tolist()))) == layer.rows.size  # each entry at most once


def test_combine_coefficients_sum_to_each_integer_weight(tiny_target):
    from mptc.approximate.construct import combine_layer

    integer = integer_form(tiny_target, 5)
    split, sources = split_layer(seed=4, inputs=6, copies=8)
    layers, lanes = [split], {0: sources}
    for t in range(1, 5):
        layer, lanes = ladder_layer(4, len(layers) + 1, layers[-1].shape[0], lanes, t, 5, 8)
        layers.append(layer)
    matrix = integer.matrices[0]
    weights = np.concatenate([matrix[:, :5], -matrix[:, :5], matrix[:, 5:]], axis=1)
    result = combine_layer(4, len(layers) + 1, layers[-1].shape[0], lanes, weights, 4, output=False)
    powers = 2 ** np.arange(5)
    sums = (result.coefficients * powers).sum(-1)
    exact = result.exact
    assert exact.mean() > 0.5
    np.testing.assert_array_equal(sums[exact], np.broadcast_to(weights[:, None, :], sums.shape)[exact])


def test_error_falls_with_width_and_precision(tiny_target, inputs):
    reference = tiny_target(inputs)

    def error(precision, copies):
        return np.abs(construct(tiny_target, precision, copies, 4, seed=0)(inputs) - reference).max()

    narrow, wide = error(8, 4), error(8, 12)
    assert wide < narrow / 4  # too few copies: inexact rows; enough: the 2^-P floor
    assert error(10, 12) < wide / 4
