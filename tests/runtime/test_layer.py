"""gemv / gemm on packed layers equal the dense product of the unpacked weights, for every kernel variant."""

from __future__ import annotations

import numpy as np
import pytest
from layer_arrays import random_layer_arrays

from pbs2p_edge.errors import ConfigError, FormatError
from pbs2p_edge.pack import PackedLayer, pack_layer, unpack_layer
from pbs2p_edge.runtime import PreparedLayer, available_kernels, gemm, gemv, prepare, select_kernel

# Named tolerance: |y - W_hat x| <= RTOL * sum_j |W_hat_ij| |x_j| (float64 reference). The kernels sum float32
# partials over <= 1024 columns after regrouping alpha*s + mu into 2*alpha*sum(x: s=+1) + (mu - alpha)*sum(x);
# observed worst case on these layers is ~6e-8, so RTOL leaves two orders of magnitude for other data.
RTOL = 1e-5

SHAPES = [  # R, K, n, m, split, n_salient, mu, col_scale, group_size
    (1, 8, 4, 8, 1, 0, True, False, 128),
    (7, 136, 5, 8, 2, 4, True, False, 100),
    (127, 576, 6, 8, 1, 0, True, False, 128),
    (129, 1024, 4, 8, 3, 30, True, True, 128),
    (64, 96, 7, 16, 2, 0, False, True, 33),
]


@pytest.fixture(autouse=True)
def automatic_kernel():
    select_kernel(None)
    yield
    select_kernel(None)


def _layer(shape, seed=0) -> PackedLayer:
    R, K, n, m, split, n_sal, mu, cs, gs = shape
    rng = np.random.default_rng(seed + R + K)
    return pack_layer(**random_layer_arrays(rng, R, K, n, m, split=split, n_salient=n_sal, use_mu=mu,
                                            use_col_scale=cs, group_size=gs))


def _close(y, W, X):
    exact = X.astype(np.float64) @ W.T.astype(np.float64)
    bound = np.abs(X.astype(np.float64)) @ np.abs(W.T.astype(np.float64))
    return np.all(np.abs(y - exact) <= RTOL * bound + 1e-30), float(np.max(np.abs(y - exact) / (bound + 1e-30)))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kernel", available_kernels())
def test_gemv_and_gemm_match_the_dense_product(shape, kernel):
    packed = _layer(shape)
    W = unpack_layer(packed)
    select_kernel(kernel)
    layer = prepare(packed)
    rng = np.random.default_rng(7)
    X = rng.standard_normal((13, W.shape[1])).astype(np.float32)  # GEMM blocks tokens by 8, 4, 1
    Y = layer.gemm(X)
    ok, worst = _close(Y, W, X)
    assert ok, f"{kernel}: worst relative error {worst:.3g}"
    ok, worst = _close(layer.gemv(X[2])[None, :], W, X[2:3])
    assert ok, f"{kernel} gemv: worst relative error {worst:.3g}"
    assert np.array_equal(layer.gemm(X[2:3])[0], Y[2])  # batch-invariant: a token alone == in the batch


@pytest.mark.parametrize("kernel", available_kernels())
def test_thread_count_does_not_change_results(kernel, monkeypatch):
    monkeypatch.setenv("PBS2P_MIN_WORK_PER_THREAD", "1")  # let even this small product use every thread
    packed = _layer(SHAPES[3])
    select_kernel(kernel)
    layer = prepare(packed)
    X = np.random.default_rng(3).standard_normal((3, 1024)).astype(np.float32)
    one = layer.gemm(X, n_threads=1)
    for n_threads in (2, 3, 7):
        assert np.array_equal(layer.gemm(X, n_threads=n_threads), one)
        assert np.array_equal(layer.gemv(X[0], n_threads=n_threads), one[0])


def test_module_functions_accept_packed_or_prepared_layers_and_any_real_dtype():
    packed = _layer(SHAPES[1])
    x = np.arange(136, dtype=np.float64) / 100
    y = gemv(packed, x)
    assert y.dtype == np.float32 and y.shape == (7,)
    assert np.array_equal(gemv(prepare(packed), x.astype(np.float32)), y)
    assert np.allclose(gemm(packed, x[None, :]), y[None, :], rtol=1e-5, atol=1e-6)


def test_arguments_are_checked_before_c():
    packed = _layer(SHAPES[1])
    layer = PreparedLayer(packed)
    with pytest.raises(ConfigError, match=r"\(136,\)"):
        layer.gemv(np.zeros(135, np.float32))
    with pytest.raises(ConfigError, match="tokens, 136"):
        layer.gemm(np.zeros(136, np.float32))
    with pytest.raises(ConfigError, match="real"):
        layer.gemv(np.array(["a"] * 136))
    with pytest.raises(ConfigError, match="n_threads"):
        layer.gemv(np.zeros(136, np.float32), n_threads=0)
    with pytest.raises(ConfigError, match="n_threads"):
        layer.gemv(np.zeros(136, np.float32), n_threads=True)
    with pytest.raises(ConfigError, match="PackedLayer"):
        gemv(np.zeros((7, 136)), np.zeros(136))
    short = PackedLayer(packed.meta, {**packed.arrays, "signs": packed.arrays["signs"][:, :-1]})
    with pytest.raises(FormatError, match="signs"):
        prepare(short)


def test_prepared_size_is_two_bits_per_weight_plus_coefficients_for_plain_layers():
    rng = np.random.default_rng(5)
    packed = pack_layer(**random_layer_arrays(rng, 7, 1024, 4, 8, group_size=128))
    # planes kept + positive: 2 bits per weight; coefficients: 2 float32 per row and 128-column group
    assert prepare(packed).nbytes == 7 * 1024 * 2 // 8 + 7 * 8 * 2 * 4
