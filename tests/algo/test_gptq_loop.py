import torch

from pbs2p_edge.algo.billm import billm_init
from pbs2p_edge.algo.gptq_loop import gptq_loop
from pbs2p_edge.algo.hessian_prep import prepare_hessian

from .conftest import h_error, make_layer


def test_loop_compensates_and_reports_loss():
    W, H = make_layer(32, 200, seed=0)  # 200 = 64 x 3 + 8: partial last block
    p = prepare_hessian(W, H, 0.01)
    d = torch.diagonal(p.U)

    def run(U, intra=False):
        Wc = p.W.clone()
        fit = lambda s, e: billm_init(Wc[:, s:e], torch.ones(32, e - s, dtype=torch.bool), d[s:e],
                                      False, 1, 1, True).rounded()
        fits = []
        out = gptq_loop(Wc, U, fit, 64, lambda s, e, f: fits.append((s, e, f)), intra, keep_q=True)
        return out, Wc, fits

    (plain, _, plain_fits), (comp, Wc, fits), (intra, _, _) = run(None), run(p.U), run(p.U, True)
    assert [(s, e, f.kept.shape[1]) for s, e, f in fits] == [(0, 64, 64), (64, 128, 64), (128, 192, 64), (192, 200, 8)]
    assert plain.loss == 0
    assert torch.equal(fits[0][2].dequant(), plain_fits[0][2].dequant())  # first block sees no compensation
    assert torch.equal(torch.cat([f.dequant() for _, _, f in fits], 1), comp.Q)  # the emitted fits are the final ones
    assert h_error(W, comp.Q, H) < 0.7 * h_error(W, plain.Q, H)
    assert h_error(W, intra.Q, H) < h_error(W, comp.Q, H)  # measured: about half on this layer
    # Wc now holds each block's compensated weights as it was fitted
    assert abs(comp.loss - float(((Wc - comp.Q) / d).square().sum())) < 1e-4 * comp.loss
