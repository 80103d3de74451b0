"""Which code path torch's kernels take on the CPU, so that results do not depend on it:
the same float operations in the same order on any x86-64 machine with AVX2.

Torch's own (ATen) kernels — reductions, softmax, the optimiser's steps — and oneDNN's
convolutions pick their vectorised build by the CPU they run on, AVX-512 where it has it;
summation order, hence every float, then differs from a machine without it. Each library
reads an environment variable at its first kernel, so `pin_cpu_capability` must run
before any tensor work; spawned workers inherit the environment. MKL's conditional
numerical reproducibility (MKL_CBWR) pins its sgemm the same way. What each changed, and
cost, is measured in benchmarks/isa.py (BENCHMARKS.md).
"""

from __future__ import annotations

import os
import platform

X86_64 = ("x86_64", "amd64")
PINS = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                 "MKL_CBWR": "AVX2"}}


def pin_cpu_capability(capability: str) -> None:
    """Pin this process's and its children's kernels to `capability`'s build. "native"
    leaves each library's choice; so does a CPU that is not x86-64 (no AVX2 build)."""
    if capability in PINS and platform.machine().lower() in X86_64:
        os.environ.update(PINS[capability])
