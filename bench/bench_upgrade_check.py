"""`upgrade-check` on the embedded default (what `make upgrade-check` runs), warm caches.

Runs the real CLI as a whole process, alternating the worker fork servers
(default) with plain worker processes (``LANGGRAPH_MIGRATOR_NO_FORKSERVER=1``,
the behaviour before the fork servers) in the same run, and prints median,
min and max wall seconds of each and their ratio pair by pair.

    .venv/bin/python bench/bench_upgrade_check.py [--rounds 5] [--from SPEC]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

DEFAULT_FROM = "langgraph-checkpoint-postgres==2.0.25"


def _once(from_spec: str, fork: bool) -> float:
    env = dict(os.environ)
    env.pop("LANGGRAPH_MIGRATOR_NO_FORKSERVER", None)
    if not fork:
        env["LANGGRAPH_MIGRATOR_NO_FORKSERVER"] = "1"
    cmd = [
        sys.executable,
        "-c",
        "from migrator.cli import main; main()",
        "upgrade-check",
        "--from",
        from_spec,
        "--to",
        "current",
        "--pg",
        "local",
        "-q",
    ]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"upgrade-check failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--from", dest="from_spec", default=DEFAULT_FROM)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"upgrade-check --from {args.from_spec!r} --to current --pg local (warm-up run first)")
    _once(args.from_spec, True)
    _once(args.from_spec, False)
    fork, plain = [], []
    for _ in range(args.rounds):
        fork.append(_once(args.from_spec, True))
        plain.append(_once(args.from_spec, False))
    ratios = [f / p for f, p in zip(fork, plain, strict=True)]
    for name, xs in (("fork servers", fork), ("plain workers", plain)):
        print(
            f"{name:14s} median {statistics.median(xs):6.2f}s "
            f"(min {min(xs):.2f}, max {max(xs):.2f}) over {len(xs)} runs"
        )
    print(
        f"ratio fork/plain, pair by pair: median {statistics.median(ratios):.2f} "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f})"
    )


if __name__ == "__main__":
    main()
