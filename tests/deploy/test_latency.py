"""The one latency function: quartiles and extremes in order, conditions recorded, thread counts
checked, torch's thread setting restored, noise flagged."""
from __future__ import annotations

import math
import time

import pytest
import torch
from torch import nn

from leannet.errors import LeannetError
from leannet.measure import (Latency, check_threads, latency_from_dict, measure, time_latency,
                             torch_latency)


def test_sleep_is_timed_with_its_spread():
    latency = time_latency(lambda: time.sleep(0.002), runtime="python", precision="fp32",
                           threads=1, batch=1, runs=7, warmup=1, warn=False)
    assert latency.runs == 7 and latency.warmup == 1
    assert 2.0 <= latency.min_ms <= latency.q1_ms <= latency.median_ms <= latency.q3_ms \
        <= latency.max_ms
    assert latency.median_ms < 50  # a 2 ms sleep, even on a busy machine
    text = str(latency)
    assert "IQR" in text and "python fp32, 1 thread, batch 1" in text and "7 runs" in text
    assert latency_from_dict(latency.to_dict()) == latency
    assert latency.to_dict()["iqr_ms"] == pytest.approx(latency.q3_ms - latency.q1_ms, abs=1e-3)


def test_min_seconds_takes_more_samples():
    latency = time_latency(lambda: None, runtime="python", precision="fp32", threads=1, batch=1,
                           runs=5, warmup=0, min_seconds=0.01, warn=False)
    assert latency.runs > 5


@pytest.mark.parametrize("bad", [0, -1, 1.5, math.nan, math.inf, "nan", "two", None])
def test_bad_thread_counts_are_refused(bad):
    with pytest.raises(LeannetError, match="threads must be a positive whole number"):
        check_threads(bad)
    with pytest.raises(LeannetError):
        time_latency(lambda: None, runtime="x", precision="fp32", threads=bad, batch=1)


def test_thread_counts_accepted_and_torch_restored():
    assert check_threads("2") == 2 and check_threads(3.0) == 3
    before = torch.get_num_threads()
    seen = []
    time_latency(lambda: seen.append(torch.get_num_threads()), runtime="torch", precision="fp32",
                 threads=2, batch=1, runs=2, warmup=0, warn=False)
    assert set(seen) == {2} and torch.get_num_threads() == before


def test_noisy_measurements_warn():
    delays = iter([0.0, 0.0, 0.02, 0.0, 0.02, 0.0, 0.02, 0.0] * 3)
    with pytest.warns(UserWarning, match="latency is noisy"):
        latency = time_latency(lambda: time.sleep(next(delays)), runtime="python",
                               precision="fp32", threads=1, batch=1, runs=8, warmup=0)
    assert latency.noisy and "NOISY" in str(latency)


def test_torch_latency_and_measure_carry_conditions():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).train()
    latency = torch_latency(model, (2, 3, 16, 16), runs=5, warmup=1, warn=False)
    assert isinstance(latency, Latency) and latency.batch == 2 and latency.threads == 1
    assert latency.runtime == "torch" and model.training
    numbers = measure(model, (1, 3, 16, 16), runs=5)
    assert numbers["latency_ms"] == numbers["latency"]["median_ms"] > 0
    assert numbers["latency"]["threads"] == 1 and "q3_ms" in numbers["latency"]


def test_interleaved_timing_keeps_ratios_and_counts():
    from leannet.measure import Timed, time_latencies

    order = []
    items = {name: Timed(lambda name=name, delay=delay: (order.append(name), time.sleep(delay)),
                         "python", "fp32", 1)
             for name, delay in (("slow", 0.004), ("fast", 0.001))}
    result = time_latencies(items, threads=1, runs=6, warmup=1, rounds=3, warn=False)
    assert result["slow"].runs == result["fast"].runs == 6
    assert result["slow"].median_ms > 2 * result["fast"].median_ms
    # warm-up once each, then rounds alternate: slow, fast, slow, fast, ...
    assert order[:3] == ["slow"] * 3 and order[3:6] == ["fast"] * 3 and order[6] == "slow"
