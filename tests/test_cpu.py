"""The pinned kernels: a `prunelab` process and its spawned workers run ATen's AVX2 build
on an x86-64 CPU with AVX-512, as one without it would (benchmarks/isa.py)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prunelab.cpu import PINS, X86_64

PROBE = """
import multiprocessing, sys
import torch
from prunelab.cpu import pin_cpu_capability

def capability(_: int) -> str:
    return torch.backends.cpu.get_cpu_capability()

if __name__ == "__main__":
    pin_cpu_capability(sys.argv[1])
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        print(capability(0), pool.map(capability, [0])[0])
"""


def _capabilities(setting: str, tmp: Path) -> list[str]:
    script = tmp / "probe.py"
    script.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k not in PINS["avx2"]}
    out = subprocess.run([sys.executable, str(script), setting], env=env, check=True,
                         capture_output=True, text=True).stdout
    return out.split()


@pytest.mark.skipif(platform.machine().lower() not in X86_64, reason="x86-64 only")
def test_avx2_pins_the_process_and_its_workers_native_leaves_the_cpu_s_own(
        tmp_path: Path) -> None:
    native = _capabilities("native", tmp_path)
    assert native[0] == native[1]  # whatever this CPU's best is
    assert _capabilities("avx2", tmp_path) == ["AVX2", "AVX2"]
    if native[0] == "AVX2":
        pytest.skip("this CPU has no AVX-512: native and pinned are the same path here")


def test_the_suite_runs_on_the_kernels_params_yaml_pins() -> None:
    """conftest pins as `prunelab` does, so in-process results match the stages'."""
    if platform.machine().lower() in X86_64:
        assert torch.backends.cpu.get_cpu_capability() == "AVX2"
        assert os.environ["ATEN_CPU_CAPABILITY"] == "avx2"
