"""Dataset loading speed: tunespec's CSV reader (all checks) vs a bare csv.reader loop, 100k rows.

Run: python bench/datasets_load.py [ROWS]. Prints rows/s for both and their ratio.
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
from pathlib import Path

from tunespec.datasets import read_examples


def best_of(runs: int, func) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main(rows: int = 100_000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.csv"
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text_input", "output"])
            writer.writerows((f"{i}", f"{i + 1}") for i in range(rows))

        def bare() -> None:
            with path.open(encoding="utf-8", newline="") as f:
                reader = csv.reader(f)
                next(reader)
                pairs = [(r[0], r[1]) for r in reader]
            assert len(pairs) == rows

        def tunespec() -> None:
            assert len(read_examples(path).examples) == rows

        t_bare, t_ours = best_of(3, bare), best_of(3, tunespec)
    print(f"{rows:,} rows CSV")
    print(f"  bare csv.reader loop : {rows / t_bare:>12,.0f} rows/s  ({t_bare * 1000:.0f} ms)")
    print(f"  tunespec read_examples: {rows / t_ours:>11,.0f} rows/s  ({t_ours * 1000:.0f} ms)")
    print(f"  ratio (tunespec / bare time): {t_ours / t_bare:.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
