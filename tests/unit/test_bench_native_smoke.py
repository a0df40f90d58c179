"""Smoke test: ``python bench/bench_native.py --quick`` runs, passes its own sanity checks (every frame
forwarded, native == pure, valid checksums) and prints the summary table.  Figures are not judged here."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from pylvs import native

ROOT = pathlib.Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "bench_native.py"


@pytest.mark.once  # the benchmark measures both implementations itself
@pytest.mark.skipif(not native.available(),
                    reason="pylvs._native (the C extension) is not built: bench_native.py requires it")
def test_bench_native_quick():
    r = subprocess.run([sys.executable, str(BENCH), "--quick"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    out = r.stdout
    assert "== SUMMARY vs targets" in out, out
    summary = out.split("== SUMMARY vs targets", 1)[1]
    verdicts = [ln for ln in summary.splitlines() if ln.endswith(("PASS", "FALL SHORT"))]
    assert len(verdicts) == 6, summary
    assert "all frames forwarded, native == pure, checksums valid" in summary, summary
    assert "ERROR" not in out, out
