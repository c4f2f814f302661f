"""Batch norm forward + backward, four implementations side by side (run by hand; the bandwidth figures need CUDA).

    python bench/triton_bn.py                 # (64, 64, 32, 32) float32
    python bench/triton_bn.py --shape 32 128 28 28 --repeats 50

The four: the NumPy reference (the NumPy exercise's bn_forward / bn_backward, on the host), the course's
BatchNormFunction (the PyTorch exercise), the Triton kernels (the Triton exercise), and cuDNN through
``torch.nn.functional.batch_norm``; the solutions' code comes from ``solutions/`` (:mod:`autograder.grading.solved`).
Each is timed for one forward and one backward pass on the same input. The effective bandwidth is the bytes that
the Triton kernels' scheme moves (forward: read x twice, write y; backward: read x and dy twice, write dx; 8 times
the size of x in all) divided by the time, and it is given as a fraction of the device's peak: the data-sheet figure
when the device's name is in ``PEAK_BANDWIDTH``, and the bandwidth of a large ``torch.clone`` (read + write)
measured here in any case. Without CUDA the script says so, checks the Triton kernels in Triton's interpreter on a
small input against ``F.batch_norm``, and exits 0.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from autograder.grading.solved import solved  # noqa: E402

# Data-sheet memory bandwidth in bytes per second, by a substring of torch.cuda.get_device_name().
PEAK_BANDWIDTH = {"H200": 4.8e12, "H100 SXM": 3.35e12, "H100 PCIe": 2.0e12, "H100": 3.35e12,
                  "A100-SXM4-80GB": 2.039e12, "A100 80GB PCIe": 1.935e12, "A100": 1.555e12, "L40S": 0.864e12,
                  "L4": 0.3e12, "A10G": 0.6e12, "A10": 0.6e12, "T4": 0.32e12, "V100": 0.9e12, "RTX 4090": 1.008e12}
TRAFFIC = 8  # tensors of x's size moved by forward + backward in the kernels' scheme


def implementations():
    """{name: (function(x, gamma, beta, dy) that runs forward and backward, where it runs)}."""
    torch_solution = solved("01_four_steps_torch", {"torch": torch})
    triton_solution = solved("01_four_steps_triton", {"torch": torch, "triton": triton, "tl": tl})
    numpy_solution = solved("01_four_steps_numpy", {"np": np})

    def autograd(batch_norm):
        def run(x, gamma, beta, dy):
            y = batch_norm(x, gamma, beta)
            y.backward(dy)
        return run

    def numpy(x, gamma, beta, dy):
        _y, cache = numpy_solution["bn_forward"](x, gamma, beta)
        numpy_solution["bn_backward"](dy, cache)

    def cudnn(x, gamma, beta):
        return F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5)

    return {"NumPy reference (host)": (numpy, "numpy"),
            "BatchNormFunction (PyTorch)": (autograd(torch_solution["batch_norm"]), "device"),
            "Triton kernels": (autograd(triton_solution["batch_norm_triton"]), "device"),
            "F.batch_norm (cuDNN)": (autograd(cudnn), "device")}, triton_solution["batch_norm_triton"]


def inputs(shape, device, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = 3.0 + 2.0 * torch.randn(shape, generator=generator)
    gamma, beta = torch.rand(shape[1], generator=generator) + 0.5, torch.randn(shape[1], generator=generator)
    dy = 0.7 + torch.randn(shape, generator=generator)
    return [t.to(device) for t in (x, gamma, beta, dy)]


def seconds(run, arguments, repeats, cuda):
    """The median time of ``run(*arguments)`` over ``repeats`` runs, after 3 warm-up runs."""
    for _ in range(3):
        run(*arguments)
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        run(*arguments)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def copy_bandwidth(size_bytes=1 << 30):
    """Bytes per second of a large torch.clone on the GPU (it reads and writes every byte)."""
    block = torch.empty(size_bytes // 4, dtype=torch.float32, device="cuda")
    elapsed = seconds(lambda: block.clone(), (), 10, cuda=True)
    return 2 * size_bytes / elapsed


def interpreter_check():
    """Without CUDA: the Triton kernels, interpreted, against F.batch_norm on a small input."""
    _, batch_norm_triton = implementations()
    x, gamma, beta, dy = inputs((6, 3, 5, 7), "cpu")
    tensors = [t.clone().requires_grad_() for t in (x, gamma, beta)]
    reference = [t.clone().double().requires_grad_() for t in (x, gamma, beta)]
    batch_norm_triton(*tensors).backward(dy)
    F.batch_norm(reference[0], None, None, *reference[1:], training=True).backward(dy.double())
    worst = max(float((a.grad - b.grad).abs().max() / b.grad.abs().max()) for a, b in zip(tensors, reference))
    print(f"Triton interpreter: gradients of (6, 3, 5, 7) float32 within {worst:.1e} of float64 F.batch_norm")
    return worst < 1e-4


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs="+", default=[64, 64, 32, 32])
    parser.add_argument("--repeats", type=int, default=20)
    arguments = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("No CUDA device: no bandwidth figure (Triton's interpreter is a correctness tool, not a GPU).")
        return 0 if interpreter_check() else 1
    shape, name = tuple(arguments.shape), torch.cuda.get_device_name()
    runs, _ = implementations()
    x, gamma, beta, dy = inputs(shape, "cuda")
    moved = TRAFFIC * x.numel() * x.element_size()
    peak = next((value for key, value in PEAK_BANDWIDTH.items() if key in name), None)
    measured_peak = copy_bandwidth()
    print(f"{name}: x {shape} float32, {moved / 2**20:.0f} MiB moved per forward + backward; "
          f"peak {'%.2f TB/s (data sheet)' % (peak / 1e12) if peak else 'not in PEAK_BANDWIDTH'}, "
          f"torch.clone {measured_peak / 1e12:.2f} TB/s (measured)")
    print(f"{'implementation':30s} {'time (ms)':>10s} {'GB/s':>8s} {'of peak':>8s} {'of clone':>8s} {'vs cuDNN':>8s}")
    results = {}
    for label, (run, where) in runs.items():
        if where == "numpy":
            host = [t.cpu().numpy() for t in (x, gamma, beta, dy)]
            results[label] = seconds(run, host, max(3, arguments.repeats // 10), cuda=False)
        else:
            tensors = [t.clone().requires_grad_() for t in (x, gamma, beta)]
            results[label] = seconds(run, (*tensors, dy), arguments.repeats, cuda=True)
    cudnn = results["F.batch_norm (cuDNN)"]
    for label, elapsed in results.items():
        bandwidth = moved / elapsed
        of_peak = f"{bandwidth / peak:8.0%}" if peak and "host" not in label else f"{'':8s}"
        of_clone = f"{bandwidth / measured_peak:8.0%}" if "host" not in label else f"{'':8s}"
        print(f"{label:30s} {elapsed * 1e3:10.3f} {bandwidth / 1e9:8.0f} {of_peak} {of_clone} {elapsed / cudnn:7.2f}x")
    ratio, fraction = results["Triton kernels"] / cudnn, moved / results["Triton kernels"] / (peak or measured_peak)
    print(f"goal: Triton within 1.5x of cuDNN ({ratio:.2f}x: {'met' if ratio <= 1.5 else 'not met'}), "
          f"above 60% of peak bandwidth ({fraction:.0%}: {'met' if fraction >= 0.6 else 'not met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
