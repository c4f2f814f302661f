"""Running a student's function in real processes of a ``torch.distributed`` group (gloo, on the CPU).

:func:`run_in_group` forks one process per rank (the student's function,
defined in the notebook, is inherited by the fork, so nothing is pickled but
data), joins them into a gloo process group through a file in a temporary
folder (no port to choose), and calls the function on each rank's shard of
every case. What comes back is data only: per rank and case, the returned
values as NumPy arrays with their torch dtype, or the exception as its type
and message. A rank that hangs (a collective only one rank calls) is stopped
after ``timeout`` seconds.
"""

import multiprocessing
import os
import queue as queues
import sys
import tempfile
import time
import traceback
from datetime import timedelta

import numpy as np

# Seconds a collective may wait for the other rank, and the whole run at most.
COLLECTIVE_TIMEOUT = 20
RUN_TIMEOUT = 60


class GroupFailure(Exception):
    """The processes could not be started, or did not answer in time."""


def run_in_group(function, cases, timeout=RUN_TIMEOUT):
    """``results[rank][case]`` for ``function(shard)`` on every rank, ``cases[case][rank]`` a NumPy shard.

    Each result is ``("returned", values)`` with ``values`` a tuple of
    ``(torch dtype name, device name, array)`` for tensors (``(type name,
    None, None)`` otherwise) when the function returned a tuple, or
    ``("raised", "TypeName: message", last traceback line)``.

    When ``function`` lives in the student's kernel (a handle of the grader), the group is forked from the
    kernel, by this same code, which the grader sends there with its server.
    """
    in_kernel = getattr(type(function), "run_in_group_in_kernel", None)
    if in_kernel is not None:
        return in_kernel(function, cases, timeout)
    if "fork" not in multiprocessing.get_all_start_methods():
        raise GroupFailure("this check forks processes, which this system does not support (use Linux or macOS)")
    world = len(cases[0])
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    with tempfile.TemporaryDirectory(prefix="sync_check_") as folder:
        rendezvous = f"file://{os.path.join(folder, 'rendezvous')}"
        workers = [context.Process(target=_worker, daemon=True,
                                   args=(rank, world, rendezvous, function, [case[rank] for case in cases], answers))
                   for rank in range(world)]
        for worker in workers:
            worker.start()
        try:
            results = _collect(answers, world, timeout)
        finally:
            for worker in workers:
                worker.join(timeout=2)
                if worker.is_alive():
                    worker.kill()
                    worker.join()
    return [results[rank] for rank in range(world)]


def _collect(answers, world, timeout):
    results, deadline = {}, time.monotonic() + timeout
    while len(results) < world:
        try:
            rank, outcome = answers.get(timeout=max(0.1, deadline - time.monotonic()))
        except queues.Empty:
            missing = sorted(set(range(world)) - set(results))
            raise GroupFailure(f"rank {missing} did not finish within {timeout} s: a collective that the other "
                               "rank never joins waits forever (every rank must call the same collectives, "
                               "in the same order)") from None
        results[rank] = outcome
    return results


def _worker(rank, world, rendezvous, function, shards, answers):
    """One rank: join the group, call ``function`` on each shard, send back data; never return to the caller."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    if sys.platform.startswith("linux"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    outcome = []
    try:
        dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world,
                                timeout=timedelta(seconds=COLLECTIVE_TIMEOUT))
        # Every rank waits until all have connected: a rank whose function fails at once and exits would otherwise
        # close its connections while another rank is still making them ("Gloo connectFullMesh failed").
        dist.barrier()
        for shard in shards:
            outcome.append(_call(function, torch.from_numpy(shard)))
        dist.destroy_process_group()
    except BaseException as error:  # a failed rendezvous: report it as the last case's outcome
        outcome.append(_raised(error))
    finally:
        answers.put((rank, outcome))
        answers.close()
        answers.join_thread()
        os._exit(0)  # a fork of a notebook kernel must not run the kernel's exit handlers


def _call(function, x):
    try:
        returned = function(x)
    except BaseException as error:
        return _raised(error)
    values = returned if isinstance(returned, (tuple, list)) else (returned,)
    return ("returned", tuple(_as_data(value) for value in values), type(returned).__name__)


def _as_data(value):
    if hasattr(value, "detach") and hasattr(value, "dtype"):
        return str(value.dtype).replace("torch.", ""), str(value.device), np.array(value.detach().cpu().numpy())
    return type(value).__name__, None, None


def _raised(error):
    frames = traceback.extract_tb(error.__traceback__)
    where = f"line {frames[-1].lineno} of {frames[-1].name}" if frames else "your code"
    return ("raised", f"{type(error).__name__}: {error}", where)
