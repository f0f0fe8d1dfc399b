"""The benchmark (bench/run.py) runs in quick mode and prints every figure.

This only proves that the benchmark works: CI machines are shared and noisy,
so no figure is checked against a target here (docs/performance.md has the
measured figures and the targets).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys

from .harness import ROOT


def _labels() -> tuple[str, ...]:
    """bench/run.py's LABELS, read without importing the script."""
    tree = ast.parse((ROOT / "bench" / "run.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "LABELS" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise AssertionError("no LABELS in bench/run.py")


def test_quick_benchmark_prints_every_figure() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--no-install"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for label in _labels():
        assert any(line.startswith(label) for line in proc.stdout.splitlines()), (label, out)
    assert "0 errors" in out


def test_web_sim_runs_each_variant_through_a_real_mitmweb_master() -> None:
    """bench/web_sim.py (docs/performance.md, fifth round): each variant's
    flows go through mitmweb's hooks; the script fails when a variant that
    adds identity headers did not add them (the addon: not the fast lane)."""
    for variant in ("plain", "addon", "ideal", "fields", "marked"):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "web_sim.py"), "--variant", variant,
             "--flows", "20", "--warm", "5"],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads(proc.stdout.splitlines()[-1])
        assert result["variant"] == variant and result["cpu_us_per_flow"] > 0


def test_variants_compares_mitmweb_processes() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "variants.py"), "--tool", "mitmweb",
         "--rounds", "1", "--duration", "1", "addon=addon"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    lines = proc.stdout.splitlines()
    assert any(line.startswith("plain ") and "ratio 1.000" in line for line in lines), out
    assert any(line.startswith("addon ") and "ratio" in line for line in lines), out
