"""Tests of compress_model on tiny Llama and OPT: every linear compressed and replaced, Hessians from
the compressed previous blocks, per-layer N (CFS for pbs2p), determinism."""

import copy
import dataclasses
import re

import pytest
import torch

from pbs2p_edge.algo.config import CompressConfig
from pbs2p_edge.calib.hessian import accumulate_hessians
from pbs2p_edge.calib.windows import calibration_windows
from pbs2p_edge.errors import ConfigError
from pbs2p_edge.model.arch import arch_for, block_linears, decoder_blocks
from pbs2p_edge.model.sequential import compress_model

MODELS = ["tiny_llama", "tiny_opt"]


def all_linears(model) -> dict:
    spec = arch_for(model)
    return {
        f"{spec.blocks}.{i}.{name}": lin
        for i, block in enumerate(decoder_blocks(model, spec))
        for name, lin in block_linears(block, spec).items()
    }


def same_results(a, b) -> bool:
    if a.keys() != b.keys():
        return False
    for name in a:
        ra, rb = a[name], b[name]
        for field in ["mask", "signs", "salient", "group", "alpha", "mu"]:
            if not torch.equal(getattr(ra, field), getattr(rb, field)):
                return False
        if ra.loss != rb.loss or ra.n != rb.n:
            return False
    return True


def fp_importances(model, windows: torch.Tensor) -> list[float]:
    """CFS importance of every decoder block, from each FP block's own input and output over `windows`
    (rows of token ids, run one at a time as the pipeline does)."""
    from pbs2p_edge.algo.cfs import block_importance

    ins, outs, handles = {}, {}, []
    for i, block in enumerate(decoder_blocks(model)):
        def hook(m, args, kwargs, out, i=i):
            ins.setdefault(i, []).append(args[0] if args else kwargs["hidden_states"])
            outs.setdefault(i, []).append(out[0] if isinstance(out, tuple) else out)
        handles.append(block.register_forward_hook(hook, with_kwargs=True))
    with torch.no_grad():
        for row in windows:
            model(input_ids=row[None], use_cache=False)
    for h in handles:
        h.remove()
    return [block_importance(torch.cat(ins[i]), torch.cat(outs[i])) for i in sorted(ins)]


@pytest.fixture
def calib(tiny_ids):
    return calibration_windows(tiny_ids, nsamples=4, seqlen=32, seed=0)


@pytest.mark.parametrize("name", MODELS)
def test_rtn_compresses_and_replaces_every_linear(name, request, calib):
    model = request.getfixturevalue(name)
    linears = all_linears(model)
    before = {k: lin.weight.clone() for k, lin in linears.items()}
    run = compress_model(model, calib, CompressConfig(method="rtn"), progress=False)
    assert list(run.results) == list(linears)  # every linear, in block and execution order
    assert run.layer_n == {k: 8 for k in linears} and run.block_n == [8, 8] and run.importance == []
    for k, lin in linears.items():
        w = lin.weight
        assert torch.equal(w, run.results[k].dequantize()) and not torch.equal(w, before[k])
        # rtn: |w| is one alpha per (row, 128-column group)
        assert w.abs().unique().numel() <= w.shape[0] * -(-w.shape[1] // 128)
    assert run.seconds > 0 and run.peak_memory_bytes > 0 and run.config.method == "rtn"


def test_block_hessians_come_from_the_compressed_previous_block(tiny_llama, calib, monkeypatch):
    import pbs2p_edge.algo.compress_layer as cl

    seen = {}
    real = cl.compress_layer

    def recording(W, H, cfg, n, **kw):
        seen.setdefault(tuple(W.shape), []).append(H.clone())
        return real(W, H, cfg, n, **kw)

    monkeypatch.setattr(cl, "compress_layer", recording)
    compress_model(tiny_llama, calib, CompressConfig(method="rtn"), progress=False)
    # After compression, block 1's q_proj inputs (from the compressed block 0) give block 1's H.
    q1 = tiny_llama.get_submodule("model.layers.1.self_attn.q_proj")
    with accumulate_hessians({"q": q1}) as hs, torch.no_grad():
        for row in calib:
            tiny_llama(input_ids=row[None], use_cache=False)
    H_q0, H_k0, H_v0, H_o0, H_q1 = seen[(64, 64)][0], seen[(32, 64)][0], seen[(32, 64)][1], seen[(64, 64)][1], seen[(64, 64)][2]
    torch.testing.assert_close(H_q1, hs["q"].H, rtol=1e-4, atol=1e-5)
    assert torch.equal(H_q0, H_k0) and torch.equal(H_k0, H_v0)  # q, k, v share one input
    assert not torch.allclose(H_q0, H_o0)


@pytest.mark.parametrize("name", MODELS)
def test_pbs2p_with_cfs_and_same_seed_gives_identical_results(name, request, calib):
    model = request.getfixturevalue(name)
    twin = copy.deepcopy(model)
    expected = fp_importances(model, calib)  # over all calibration windows

    cfg = CompressConfig(method="pbs2p", n=4, m=8, arb_iters=2, spbo_iters=1)
    a = compress_model(model, calib, cfg, progress=False)
    assert a.importance == pytest.approx(expected, rel=1e-5)
    b = compress_model(twin, calib, cfg, progress=False)
    assert same_results(a.results, b.results) and a.block_n == b.block_n and a.importance == b.importance
    assert len(a.importance) == 2 and all(i > 0 for i in a.importance)
    assert all(3 <= n <= 5 for n in a.block_n)
    linears = all_linears(model)
    params = {k: lin.weight.numel() for k, lin in linears.items()}
    assert sum(params[k] * a.layer_n[k] for k in params) == 4 * sum(params.values())  # budget kept exactly
    for k, lin in linears.items():
        r = a.results[k]
        block = int(re.search(r"\.layers\.(\d+)\.", k).group(1))
        assert r.n == a.layer_n[k] == a.block_n[block]
        R, K = r.shape
        assert torch.equal(r.mask.reshape(R, K // 8, 8).sum(-1), torch.full((R, K // 8), r.n))
        assert torch.equal(lin.weight, r.dequantize())


def test_cfs_importance_comes_from_the_first_cfs_windows(tiny_llama, calib):
    """cfs_windows=2: the importances are those of the FP model on calibration windows 0 and 1 alone."""
    twin = copy.deepcopy(tiny_llama)
    expected = fp_importances(tiny_llama, calib[:2])
    cfg = CompressConfig(method="pbs2p", n=4, m=8, arb_iters=1, spbo_iters=1, cfs_windows=2)
    run = compress_model(tiny_llama, calib, cfg, progress=False, num_blocks=1)
    assert run.importance == pytest.approx(expected, rel=1e-5)
    every = CompressConfig(method="pbs2p", n=4, m=8, arb_iters=0, spbo_iters=0, cfs_windows=None)
    assert run.importance != pytest.approx(compress_model(twin, calib, every, progress=False, num_blocks=1).importance,
                                           rel=1e-5)  # all 4 windows give other values


def test_cfs_off_gives_every_layer_n(tiny_llama, calib):
    run = compress_model(tiny_llama, calib, CompressConfig(method="pbs2p", n=5, cfs=False, arb_iters=1, spbo_iters=1), progress=False)
    assert run.importance == [] and set(run.layer_n.values()) == {5}


def test_bad_calibration_shape(tiny_llama, calib):
    with pytest.raises(ConfigError, match="nsamples"):
        compress_model(tiny_llama, calib[0], CompressConfig(method="rtn"), progress=False)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_activations_kept_in_half_the_memory_run_the_block_at_float32(monkeypatch, tiny_llama, calib, dtype):
    """act_dtype: the activations between blocks (and recovery's targets) are held in dtype; every block and
    every Hessian still runs at float32, and the result is the float32 run's up to the activations' rounding."""
    from pbs2p_edge.model import sequential

    twin = copy.deepcopy(tiny_llama)
    cfg = CompressConfig(method="pbs2p", n=4, cfs=False, arb_iters=1, spbo_iters=1, recover_steps=2)
    seen, ran = set(), set()
    run_all, run_block = sequential._run_all, sequential.run_block

    def recording_run_all(block, x, kwargs, out):
        seen.add(x.dtype)
        return run_all(block, x, kwargs, out)

    def recording_run_block(block, x, kwargs, overrides=None):
        ran.add(x.dtype)
        return run_block(block, x, kwargs, overrides)

    monkeypatch.setattr(sequential, "_run_all", recording_run_all)
    monkeypatch.setattr(sequential, "run_block", recording_run_block)
    half = compress_model(tiny_llama, calib, cfg, progress=False, act_dtype=dtype)
    assert seen == {dtype} and ran == {torch.float32}
    assert len(half.recovery) == 2  # recovery ran on the half-precision targets
    monkeypatch.undo()
    full = compress_model(twin, calib, cfg, progress=False)
    assert half.results.keys() == full.results.keys()
    differ = 0
    for k in full.results:
        a, b = half.results[k].dequantize(), full.results[k].dequantize()
        assert float((a - b).norm() / b.norm()) < 0.3  # signs and scales moved by the rounding (about 0.2 on a tiny random model)
        differ += not torch.equal(a, b)
    assert differ  # the rounding reached the fits (through the Hessians): the option is not a no-op


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_matches_cpu_blocks_return_home(tiny_llama, calib, dtype):
    twin = copy.deepcopy(tiny_llama)
    cfg = CompressConfig(method="rtn")
    gpu = compress_model(tiny_llama, calib, cfg, device="cuda", progress=False, act_dtype=dtype)
    cpu = compress_model(twin, calib, cfg, progress=False, act_dtype=dtype)
    assert all(p.device.type == "cpu" for p in tiny_llama.parameters())
    assert all(r.mask.device.type == "cpu" for r in gpu.results.values())
    for k in cpu.results:
        torch.testing.assert_close(gpu.results[k].dequantize(), cpu.results[k].dequantize(), rtol=1e-3, atol=1e-3)


def test_num_blocks_compresses_only_the_first(tiny_opt, calib):
    last = all_linears(tiny_opt)
    kept = {k: lin.weight.clone() for k, lin in last.items() if ".layers.1." in k}
    run = compress_model(tiny_opt, calib, CompressConfig(method="rtn"), progress=False, num_blocks=1)
    assert all(".layers.0." in k for k in run.results) and len(run.results) == 6
    assert all(torch.equal(last[k].weight, w) for k, w in kept.items())
    with pytest.raises(ConfigError, match="num_blocks"):
        compress_model(tiny_opt, calib, CompressConfig(method="rtn"), progress=False, num_blocks=3)


@pytest.mark.parametrize("codes", [False, True])
@pytest.mark.parametrize("name", MODELS)
def test_recovery_fits_every_block_and_the_model_holds_what_it_reports(name, codes, request, calib, tmp_path):
    from pbs2p_edge.algo.gptq_grid import GridResult
    from pbs2p_edge.checkpoint import save_checkpoint
    from pbs2p_edge.checkpoint.fake_quant import to_fake_quant_model

    model = request.getfixturevalue(name)
    original = copy.deepcopy(model)
    names = list(all_linears(model))
    plan = {n: ("q2_g64", "pbs2p", "q4_0")[i % 3] for i, n in enumerate(names)}
    cfg = CompressConfig(method="pbs2p", n=4, m=8, cfs=False, recover_steps=12, recover_lr=3e-3, recover_codes=codes)
    plain = compress_model(copy.deepcopy(original), calib, dataclasses.replace(cfg, recover_steps=0), plan=plan,
                           progress=False)
    run = compress_model(model, calib, cfg, plan=plan, progress=False)
    assert plain.recovery == [] and [r["block"] for r in run.recovery] == [0, 1]
    assert all(r["mse_after"] <= r["mse_before"] for r in run.recovery)
    assert all(r["mse_after"] < r["mse_before"] for r in run.recovery if r["kept"])
    assert any(r["kept"] for r in run.recovery)
    block0 = [n for n in names if ".0." in n and isinstance(run.results[n], GridResult)]
    for n in block0 if not codes else ():  # recovery comes after a block is quantized: its codes are the plain run's
        assert torch.equal(run.results[n].q, plain.results[n].q)
    for n, lin in all_linears(model).items():
        assert torch.equal(lin.weight.detach(), run.results[n].dequantize())
    kept = [r["block"] for r in run.recovery if r["kept"]]
    norms = {k: v for k, v in model.state_dict().items() if "norm" in k and f".{kept[0]}." in k}
    assert any(not torch.equal(v, original.state_dict()[k]) for k, v in norms.items())

    # the checkpoint holds the fitted norms and scales: its fake-quant model computes what the model does
    save_checkpoint(tmp_path / "ck", model, None, run.results, cfg, run.layer_n, {})
    fake, _ = to_fake_quant_model(tmp_path / "ck")
    with torch.no_grad():
        torch.testing.assert_close(fake(calib[:1]).logits, model(calib[:1]).logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("plan", [None, {"model.layers.0.mlp.down_proj": "q4_0", "model.layers.1.mlp.up_proj": "q2_g64",
                                         "model.layers.0.self_attn.o_proj": "f16"}])
def test_packed_results_restore_a_resumed_run_bit_for_bit(tiny_llama, calib, tmp_path, plan):
    """compact packs each result as soon as no recovery needs it; a run resumed from the packed block records (the
    in-memory path copies their dequantized values into the model) makes the uninterrupted run's results."""
    from pbs2p_edge.checkpoint.save import StoredResult, stored_result
    from pbs2p_edge.model.progress import Progress
    from pbs2p_edge.pack import PackedLayer
    from pbs2p_edge.pack.safetensors_stream import RowPieces

    twin = copy.deepcopy(tiny_llama)
    cfg = CompressConfig(method="pbs2p", n=4, m=8, cfs=False, seed=0)
    run = {"test": 1}
    whole = compress_model(tiny_llama, calib, cfg, progress=False, plan=plan, compact=stored_result,
                           progress_store=Progress.open(tmp_path / "p", run, resume=False))
    assert all(isinstance(r, StoredResult) for r in whole.results.values())
    # a finished block's results are read from the progress directory when written: none of their arrays in memory
    lazy = [a for r in whole.results.values() for a in (r.stored.arrays.values() if isinstance(r.stored, PackedLayer)
                                                        else [r.stored.blocks])]
    assert lazy and all(isinstance(a, RowPieces) for a in lazy)
    whole.results.update({n: r.loaded() for n, r in whole.results.items()})  # before the resumed run rewrites them
    for name in ("block-1.pt", "act-1.pt"):  # as if killed before block 1 was kept
        (tmp_path / "p" / name).unlink()
    resumed = compress_model(twin, calib, cfg, progress=False, plan=plan, compact=stored_result,
                             progress_store=Progress.open(tmp_path / "p", run, resume=True))
    assert whole.results.keys() == resumed.results.keys()
    for name, r in whole.results.items():
        s = resumed.results[name].loaded()
        assert r.loss == s.loss and r.shape == s.shape, name
        a, b = (vars(x.stored) for x in (r, s))
        arrays = lambda d: d.get("arrays") or {"blocks": d["blocks"]}  # noqa: E731
        assert all((arrays(a)[k] == arrays(b)[k]).all() for k in arrays(a)), name
        assert torch.equal(tiny_llama.get_submodule(name).weight, twin.get_submodule(name).weight)
        assert torch.equal(r.dequantize(), tiny_llama.get_submodule(name).weight)  # the packed form is the result


@pytest.mark.parametrize("name", MODELS)
def test_the_head_hessian_is_the_compressed_models_final_hidden_states(name, request, calib):
    """run.head_hessian = 2/n sum h h^T over every position, h the compressed model's input to the head (the final
    norm's output; OPT's after project_out, where it has one); none when only the first blocks were compressed."""
    model = request.getfixturevalue(name)
    run = compress_model(model, calib, CompressConfig(method="rtn"), progress=False)
    seen = []  # the head's input, as the model's own forward gives it
    hook = model.get_output_embeddings().register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    with torch.no_grad():  # the model now holds the compressed weights
        model(calib)
    hook.remove()
    head_in = seen[0]
    h = head_in.reshape(-1, head_in.shape[-1]).double()
    expected = (2 * h.T @ h / h.shape[0]).float()
    assert run.head_hessian.shape == expected.shape and run.head_hessian.dtype == torch.float32
    torch.testing.assert_close(run.head_hessian, expected, rtol=1e-4, atol=1e-5)
    partial = compress_model(request.getfixturevalue(name), calib, CompressConfig(method="rtn"), progress=False,
                             num_blocks=1)
    assert partial.head_hessian is None
