"""Tests of calibration (random, seeded) and evaluation (non-overlapping) windows."""

import pytest
import torch

from pbs2p_edge.calib.windows import calibration_windows, eval_windows
from pbs2p_edge.errors import ConfigError, DataError


def test_calibration_windows_are_seeded_slices():
    ids = torch.arange(1000)
    a = calibration_windows(ids, nsamples=16, seqlen=50, seed=0)
    assert a.shape == (16, 50) and a.dtype == torch.long
    assert torch.equal(a, calibration_windows(ids, 16, 50, seed=0))
    assert not torch.equal(a, calibration_windows(ids, 16, 50, seed=1))
    # each window is a contiguous slice of ids (ids = arange, so consecutive integers)
    assert torch.equal(a - a[:, :1], torch.arange(50).expand(16, 50))
    assert int(a.min()) >= 0 and int(a.max()) <= 999


def test_calibration_window_of_whole_text():
    ids = torch.arange(7)
    assert torch.equal(calibration_windows(ids, 3, 7, seed=5), ids.expand(3, 7))


def test_calibration_errors():
    with pytest.raises(ConfigError, match="nsamples"):
        calibration_windows(torch.arange(100), 0, 10, 0)
    with pytest.raises(DataError, match="needs 101 tokens, has 100"):
        calibration_windows(torch.arange(100), 1, 101, 0)
    with pytest.raises(DataError):
        calibration_windows(torch.zeros(2, 50, dtype=torch.long), 1, 10, 0)


def test_eval_windows_non_overlapping_and_tail_dropped():
    ids = torch.arange(105)
    w = eval_windows(ids, 20)
    assert w.shape == (5, 20) and torch.equal(w.flatten(), torch.arange(100))
    assert torch.equal(eval_windows(ids, 20, max_windows=2), w[:2])
    assert eval_windows(ids, 20, max_windows=99).shape == (5, 20)


def test_eval_errors():
    with pytest.raises(DataError, match="needs 20 tokens, has 19"):
        eval_windows(torch.arange(19), 20)
    with pytest.raises(ConfigError):
        eval_windows(torch.arange(100), 1)
    with pytest.raises(ConfigError):
        eval_windows(torch.arange(100), 10, max_windows=0)
