"""Tests of free_cores: the free cores drop by the busy process beside us, and torch's threads follow them."""

import os
import subprocess
import sys
import time

import pytest
import torch

from pbs2p_edge import free_cores
from pbs2p_edge.free_cores import FreeCores, ThreadGovernor, usable_cpus

BUSY = "import time\nend = time.time() + 30\nwhile time.time() < end: pass\n"


@pytest.fixture
def busy_process():
    """One process spinning on a core (killed after the test)."""
    p = subprocess.Popen([sys.executable, "-c", BUSY])
    time.sleep(0.5)  # running at full speed before the measure starts
    yield p
    p.kill()
    p.wait()


@pytest.mark.skipif(free_cores._machine_busy_seconds() is None or usable_cpus() < 2,
                    reason="needs /proc/stat and a core for the busy process besides ours")
def test_a_busy_process_takes_a_core_and_our_own_work_does_not(busy_process):
    cores = FreeCores()
    end = time.monotonic() + 1.0
    while time.monotonic() < end:  # our own busy time is not another process's
        pass
    free = cores.free()
    assert free is not None and free <= usable_cpus() - 0.6, free
    gov = ThreadGovernor()
    before = torch.get_num_threads()
    try:
        time.sleep(1.0)
        assert 1 <= gov.adjust() == torch.get_num_threads() <= usable_cpus() - 1
    finally:
        gov.close()
    assert torch.get_num_threads() == before


def test_nothing_measurable_keeps_the_threads(monkeypatch):
    monkeypatch.setattr(free_cores, "_machine_busy_seconds", lambda: None)
    before = torch.get_num_threads()
    gov = ThreadGovernor()
    time.sleep(0.1)
    assert gov.adjust() == before and FreeCores().free() is None
    gov.close()


@pytest.mark.parametrize("given", [{}, {"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "50"}])
def test_bounded_spinning_sets_the_spin_count_unless_a_policy_is_given(monkeypatch, given):
    for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(k, raising=False)
    for k, v in given.items():
        monkeypatch.setenv(k, v)
    free_cores.bounded_spinning()
    expect = {"GOMP_SPINCOUNT": free_cores.SPIN_COUNT} if not given else given
    assert {k: v for k, v in os.environ.items() if k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} == expect


def test_the_command_line_bounds_spinning_before_torch_starts():
    """In a fresh interpreter, main() sets the spin count before torch loads, and torch's OpenMP runtime (libgomp)
    runs with it: what libgomp read, as OMP_DISPLAY_ENV prints it when it starts."""
    code = "from pbs2p_edge.cli import main; main(['info', '--json']); import torch; torch.ones(4).sum()"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "OMP_DISPLAY_ENV": "VERBOSE"})
    assert res.returncode == 0, res.stderr
    assert f"GOMP_SPINCOUNT = '{free_cores.SPIN_COUNT}'" in res.stderr
