"""Student functions in two real gloo processes: data comes back, exceptions are reported, a hang is stopped."""

import time

import numpy as np
import pytest
import torch
import torch.distributed as dist

from autograder import processes, variants_torch
from autograder.compare import CheckFailure

SHARDS = [[np.arange(6.0).reshape(3, 2), np.arange(2.0).reshape(1, 2) + 10.0]]


def global_sum(x, group=None):
    total = x.sum(dim=0)
    dist.all_reduce(total, group=group)
    return total, torch.tensor(dist.get_rank(group))


def test_every_rank_returns_data():
    results = processes.run_in_group(global_sum, SHARDS)
    for rank, outcomes in enumerate(results):
        kind, values, _type_name = outcomes[0]
        assert kind == "returned"
        assert values[0][0] == "float64" and values[0][2].tolist() == [16.0, 20.0]
        assert values[1][2] == rank


def test_an_exception_comes_back_as_its_type_and_message():
    def broken(x, group=None):
        raise KeyError("no such statistic")

    results = processes.run_in_group(broken, SHARDS)
    assert results[0][0][:2] == ("raised", "KeyError: 'no such statistic'")


def test_a_collective_only_one_rank_joins_is_stopped(monkeypatch):
    def only_rank_0(x, group=None):
        if dist.get_rank() == 0:
            dist.all_reduce(x)
        return x.mean(dim=0), x.var(dim=0)

    monkeypatch.setattr(processes, "COLLECTIVE_TIMEOUT", 2)
    start = time.monotonic()
    results = processes.run_in_group(only_rank_0, SHARDS, timeout=30)
    assert time.monotonic() - start < 25
    assert results[0][0][0] == "raised" and results[1][0][0] == "returned"


def test_the_check_names_a_hang_on_one_rank(monkeypatch):
    def only_rank_1(x, group=None):
        if dist.get_rank() == 1:
            dist.all_reduce(x)
        return x.mean(dim=0), x.var(dim=0, unbiased=False)

    monkeypatch.setattr(processes, "COLLECTIVE_TIMEOUT", 2)
    with pytest.raises(CheckFailure, match="on rank 1"):
        variants_torch.check_sync_batch_stats(only_rank_1)
