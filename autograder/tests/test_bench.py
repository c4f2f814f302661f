"""The benchmark script (bench/triton_bn.py), run by hand on a GPU, works where the suite runs: without CUDA it
says so and checks the Triton kernels in Triton's interpreter."""

import subprocess
import sys

import pytest
import torch

from .conftest import REPOSITORY


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script benchmarks; run it by hand")
def test_benchmark_without_cuda_checks_the_kernels_in_the_interpreter():
    completed = subprocess.run([sys.executable, str(REPOSITORY / "bench" / "triton_bn.py")], capture_output=True,
                               text=True, timeout=300, cwd=REPOSITORY)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "No CUDA device" in completed.stdout
    assert "Triton interpreter: gradients of (6, 3, 5, 7) float32 within" in completed.stdout
