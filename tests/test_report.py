"""pbs2p_edge.report: plots and headline ratios redrawn from a small synthetic results folder."""

from __future__ import annotations

import json

import pytest

from pbs2p_edge.errors import ConfigError, DataError
from pbs2p_edge.report import headlines, kernel_rows, report

pytest.importorskip("matplotlib")

KERNELS_MD = """# libpbs2p kernels vs numpy float32 (Test CPU)

STREAM-like copy in the same run: **20.0 GB/s** (numpy copy of 256 MB, read + write bytes).

| shape | N:M | op | numpy fp32 ms | avx512 ms | ref ms | best vs numpy | best GB/s (% copy) | numpy GB/s (% copy) |
|---|---|---|---:|---:|---:|---:|---:|---:|
| 4096x4096 | 4:8 | gemv | 2.332 | 0.259 | 139.791 | 9.00x (avx512) | 16.0 (80%) | 28.8 (144%) |
| 4096x4096 | 4:8 | gemm T=16 | 10.629 | 12.625 | — | 0.84x (avx512) | 0.4 (2%) | 6.3 (34%) |
| 11008x4096 | 4:8 | gemv | 8.431 | 0.722 | 386.433 | 11.68x (avx512) | 12.0 (60%) | 21.4 (116%) |
| 11008x4096 | 6:8 | gemv | 8.431 | 0.730 | 372.430 | 11.55x (avx512) | 19.3 (105%) | 21.4 (116%) |
"""

E2E = {"meta": {"threads": 2, "prompt_tokens": 256, "decode_tokens": 128},
       "rows": [{"engine": "pbs2p", "name": "pbs2p compact 4:8", "bits_per_weight": 1.414, "file_bytes": 7.7e7,
                 "prompt_tps": 400.0, "decode_tps": 240.0, "peak_rss_mib": 150, "model_rss_mib": 90},
                {"engine": "llama.cpp", "name": "llama.cpp Q4_0", "bits_per_weight": 4.5, "file_bytes": 9.2e7,
                 "prompt_tps": 900.0, "decode_tps": 120.0, "peak_rss_mib": 200, "model_rss_mib": 110},
                {"engine": "llama.cpp", "name": "llama.cpp Q2_K", "bits_per_weight": 4.2, "file_bytes": 8.0e7,
                 "prompt_tps": 800.0, "decode_tps": 160.0, "peak_rss_mib": 190, "model_rss_mib": 100}]}
QUALITY = {"meta": {"windows": 16, "seqlen": 2048, "data": "austen:prideprejudice"},
           "rows": [{"engine": "ours (torch eval)", "name": "pbs2p compact 4:8", "bits_per_weight": 1.414,
                     "ppl": 500.0, "windows": 16},
                    {"engine": "llama.cpp", "name": "llama.cpp TQ1_0", "bits_per_weight": 3.797, "ppl": 1.0e6,
                     "windows": 16},
                    {"engine": "llama.cpp", "name": "llama.cpp F16", "bits_per_weight": 16.0, "ppl": 25.0,
                     "windows": 16}]}
COST = {"meta": {}, "rows": [{"shape": "SmolLM2-135M shape", "method": "pbs2p 4:8", "seconds_per_block": 10.0,
                              "full_model_seconds": 300.0, "peak_rss_mib": 900.0},
                             {"shape": "Llama-3.2-1B shape", "method": "pbs2p 4:8", "seconds_per_block": 100.0,
                              "full_model_seconds": 1600.0, "peak_rss_mib": 3000.0}]}


def _write(d, name, obj):
    (d / name).write_text(obj if isinstance(obj, str) else json.dumps(obj))


def test_kernel_rows_reads_copy_bandwidth_and_only_gemv_rows():
    copy, rows = kernel_rows(KERNELS_MD)
    assert copy == 20.0
    assert rows == [{"shape": "4096x4096", "nm": "4:8", "gbs": 16.0}, {"shape": "11008x4096", "nm": "4:8", "gbs": 12.0},
                    {"shape": "11008x4096", "nm": "6:8", "gbs": 19.3}]


def test_headlines_compute_the_issue_ratios():
    copy, rows = kernel_rows(KERNELS_MD)
    text = "\n".join(headlines(E2E, QUALITY, copy, rows))
    assert "= **1.50x**" in text and "(llama.cpp Q2_K)" in text and "1.5: met)" in text     # 240 / 160, vs the fastest peer
    assert "median 14.0 GB/s" in text and "**0.70**" in text                # median(16, 12) / 20, 4:8 rows only
    assert "**1.414 bits/weight**" in text and "IQ1_S 1.56" in text
    assert "TQ1_0 1e+06 at 3.80 bits (ratio 0.0005)" in text and "F16 25 at 16.00 bits (ratio 20)" in text


def test_report_writes_every_plot_and_the_summary(tmp_path):
    _write(tmp_path, "e2e.json", E2E)
    _write(tmp_path, "quality_vs_size.json", QUALITY)
    _write(tmp_path, "compress_cost.json", COST)
    _write(tmp_path, "kernels.md", KERNELS_MD)
    paths = report(tmp_path)
    assert [p.name for p in paths] == ["e2e.png", "pareto.png", "compress_cost.png", "kernels.png", "summary.md"]
    for p in paths[:-1]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    assert "**1.50x**" in paths[-1].read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_report_draws_only_what_the_folder_holds(tmp_path):
    _write(tmp_path, "e2e.json", E2E)
    assert [p.name for p in report(tmp_path)] == ["e2e.png", "summary.md"]


def test_report_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such results directory"):
        report(tmp_path / "missing")
    with pytest.raises(DataError, match="none of"):
        report(tmp_path)
    _write(tmp_path, "e2e.json", "{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        report(tmp_path)


def test_cli_report_prints_the_written_paths_and_refuses_a_missing_folder(tmp_path):
    import subprocess
    import sys

    (tmp_path / "kernels.md").write_text(KERNELS_MD)
    cmd = [sys.executable, "-m", "pbs2p_edge.cli", "report"]
    done = subprocess.run(cmd + [str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    printed = done.stdout.split()
    assert str(tmp_path / "kernels.png") in printed and all(p.startswith(str(tmp_path)) for p in printed)
    bad = subprocess.run(cmd + [str(tmp_path / "missing")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "no such results directory" in bad.stderr


def test_dominance_finds_our_best_file_no_larger_than_each_peer():
    from pbs2p_edge.report import dominance

    rows = [{"engine": "llama.cpp", "name": "llama.cpp Q4_0", "file_bytes": 91.7e6, "ppl": 28.7},
            {"engine": "llama.cpp", "name": "llama.cpp IQ1_S", "file_bytes": 82.3e6, "ppl": 51.8},
            {"engine": "llama.cpp", "name": "llama.cpp tiny", "file_bytes": 10e6, "ppl": 900.0},
            {"engine": "ours (libpbs2p)", "name": "a", "file_bytes": 84e6, "ppl": 27.0},
            {"engine": "ours (libpbs2p)", "name": "b", "file_bytes": 92e6, "ppl": 20.0},  # larger than Q4_0
            {"engine": "ours (libpbs2p)", "name": "c", "file_bytes": 70e6, "ppl": 60.0},
            {"engine": "ours (torch eval)", "name": "d", "bits_per_weight": 1.0, "ppl": 1.0}]  # no file: not a candidate
    lines = dominance(rows)
    assert lines[0].startswith("- llama.cpp tiny") and "no file of ours this small" in lines[0]
    assert "IQ1_S" in lines[1] and "NOT dominated by c" in lines[1]
    assert "Q4_0" in lines[2] and ": dominated by a" in lines[2]


def test_binary_tier_pairs_files_with_and_without_pbs2p_layers_of_the_same_recipe():
    from pbs2p_edge.report import binary_tier

    def row(name, mb, ppl, binary):
        return {"engine": "ours (libpbs2p)", "name": f"ours {name} (libpbs2p)", "file_bytes": mb * 1e6, "ppl": ppl,
                "tiers": {"q4_0": 10, **({"pbs2p": 3} if binary else {})}}

    rows = [row("budget-3", 50.2, 300.0, True), row("budget-3-recover64", 50.2, 80.0, True),
            row("budget-3-no-pbs2p", 50.1, 120.0, False),  # pairs with budget-3, not with the recovered file
            row("budget-4", 67.0, 40.0, False),  # no file with binary layers at 4: no line
            row("default", 83.8, 26.7, False), row("budget-5-no-pbs2p", 83.8, 27.0, False),
            row("budget-5-x", 83.9, 26.0, True),  # another recipe: budget-5-x
            row("budget-12-recover8", 90.0, 30.0, True), row("budget-12-no-pbs2p-recover8", 90.0, 29.0, False),
            {"engine": "ours (libpbs2p)", "name": "ours budget-3-old (libpbs2p)", "file_bytes": 1e6, "ppl": 1.0}]  # no tiers
    other = [{"name": "ours budget-3-no-pbs2p (libpbs2p)", "ppl": 290.0}]
    lines = binary_tier(rows, other)
    assert len(lines) == 4  # header, rule, budget-3, budget-12-recover8 (numeric order: 3 before 12)
    assert lines[2] == "| budget-3 | budget-3 | 50.2 | 300.00 | - | budget-3-no-pbs2p | 50.1 | 120.00 | 290.00 | no binary |"
    assert lines[3].startswith("| budget-12-recover8 | budget-12-recover8 |") and lines[3].endswith("| no binary |")
    rows.append(row("budget-5-no-pbs2p-y", 80.0, 30.0, False))  # the default (budget 5) against a binary file of 5
    rows.append(row("budget-5", 83.0, 25.0, True))
    lines = binary_tier(rows)
    assert "| budget-5 | budget-5 | 83.0 | 25.00 | - | default | 83.8 | 26.70 | - | binary |" in lines
    assert binary_tier([row("budget-4", 67.0, 40.0, False)]) == []
    # below the smallest file without the binary tier: the refusal stands in for the file
    refused = {"budget-2-no-pbs2p-recover64": "smallest file 43.1 MB", "budget-9-no-pbs2p": "x"}
    lines = binary_tier([row("budget-2-recover64", 33.6, 900.0, True)], refused=refused)
    assert lines[2] == ("| budget-2-recover64 | budget-2-recover64 | 33.6 | 900.00 | - | budget-2-no-pbs2p-recover64: "
                        "refused (smallest file 43.1 MB) | - | - | - | binary only |")
    assert binary_tier([row("budget-2-recover64", 33.6, 900.0, True)]) == []
