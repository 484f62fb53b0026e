"""What the benchmarks share: the quickstart's training pairs and a measured fp32 matmul peak."""

from __future__ import annotations

import statistics
import time

QUICKSTART = [
    ("1", "2"), ("3", "4"), ("-3", "-2"), ("twenty two", "twenty three"), ("two hundred", "two hundred one"),
    ("ninety nine", "one hundred"), ("8", "9"), ("-98", "-97"), ("1,000", "1,001"),
    ("10,100,000", "10,100,001"), ("thirteen", "fourteen"), ("eighty", "eighty one"), ("one", "two"),
    ("three", "four"), ("seven", "eight"),
]


def matmul_peak(n: int = 1024, reps: int = 10) -> float:
    """GFLOP/s of an n x n fp32 torch.mm (median of `reps`)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        torch.mm(a, b)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9
