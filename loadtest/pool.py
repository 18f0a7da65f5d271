#!/usr/bin/env python3
"""Pools the paired rounds of several load-test runs: one verdict per target.

A single run's ratio of medians moves with the host (a shared 2-core VM here:
nginx's `ab` medians spread 39-54k req/s between runs). Within a round the
paths run back to back, so each round's oci/nginx ratio cancels that drift;
over several runs the rounds are many, and a sign test says how likely the
count of rounds oci-connector won would be if the two proxies were equal.

    loadtest/pool.py results/run-1.json results/run-2.json ...

Each argument is a `latest.json` written by `driver.py` (copy it away after
each run; the next run overwrites it).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

# The scenarios pooled, the figure compared, and whether the issue's
# throughput targets judge it (the rest inform: the k6 storm is k6-bound, the
# TLS rows compare TLS stacks).
SCENARIOS = {
    "manifests-ab": ("rps", True),
    "blob-1": ("mibps", True),
    "blob-32": ("mibps", True),
    "blob-64": ("mibps", True),
    "manifests": ("rps", False),
    "mixed": ("rps", False),
    "tls-manifests-ab": ("rps", False),
    "tls-blob-1": ("mibps", False),
    "tls-blob-32": ("mibps", False),
}


def paired_ratios(rounds: dict, key: str) -> list[float]:
    """oci/nginx per round, in round order; a round nginx did not finish is left out.

    >>> paired_ratios({"oci-connector": [{"rps": 110}, {"rps": 90}, {"rps": 50}],
    ...                "nginx": [{"rps": 100}, {"rps": 100}, {"rps": 0}]}, "rps")
    [1.1, 0.9]
    >>> paired_ratios({"nginx": [{"rps": 100}]}, "rps")
    []
    """
    oci, nginx = rounds.get("oci-connector", []), rounds.get("nginx", [])
    return [o[key] / n[key] for o, n in zip(oci, nginx) if n[key]]


def won(ratios: list[float]) -> int:
    """Rounds oci-connector was at least as fast as nginx.

    >>> won([1.1, 0.9, 1.0])
    2
    """
    return sum(r >= 1.0 for r in ratios)


def summary(ratios: list[float]) -> str:
    """One line for a run's report.

    >>> summary([1.1, 0.9, 1.2])
    'paired median 1.10x, ahead in 2 of 3 rounds'
    """
    return f"paired median {statistics.median(ratios):.2f}x, ahead in {won(ratios)} of {len(ratios)} rounds"


def sign_test(wins: int, n: int) -> float:
    """One-sided p-value of at least `wins` of `n` rounds won by a proxy that
    is no better than the other (each round a coin flip).

    >>> round(sign_test(18, 21), 4)
    0.0007
    >>> sign_test(0, 5)
    1.0
    >>> sign_test(3, 3)
    0.125
    """
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    pooled: dict[str, list[float]] = {}
    per_run: dict[str, list[str]] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict) or "rounds" not in data:
            print(f"{path}: no per-round data (written before paired rounds were recorded)", file=sys.stderr)
            return 1
        for scenario, (key, _) in SCENARIOS.items():
            ratios = paired_ratios(data["rounds"].get(scenario, {}), key)
            if ratios:
                pooled.setdefault(scenario, []).extend(ratios)
                per_run.setdefault(scenario, []).append(f"{statistics.median(ratios):.2f}")
    print(f"{len(paths)} runs pooled\n")
    print("| scenario | judged | paired median per run | rounds | pooled median oci/nginx | oci ahead | sign test p |")
    print("|---|---|---|---:|---:|---:|---:|")
    for scenario, ratios in pooled.items():
        wins = won(ratios)
        judged = "yes" if SCENARIOS[scenario][1] else "no"
        print(f"| {scenario} | {judged} | {' / '.join(per_run[scenario])} | {len(ratios)} "
              f"| {statistics.median(ratios):.2f}x | {wins} of {len(ratios)} | {sign_test(wins, len(ratios)):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
