"""Foundation figures: starting an ephemeral cluster, and getting a version environment.

Each figure is printed next to its baseline measured in the same run:

- cluster start from the per-major initdb template vs. a cold start (template
  rebuilt from scratch with initdb), per Postgres major this machine provides;
- ``ensure_env`` on a cached environment vs. building it into an empty cache.

Run: ``.venv/bin/python bench/bench_foundation.py [--majors 15,18] [--era 2.0.8]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

from migrator import envs
from migrator.postgres import list_sources, provision
from migrator.postgres.local import template_dir
from migrator.postgres.sources import resolve_binaries


def _timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_clusters(majors: list[int], repeat: int) -> None:
    print(f"{'major':>5} {'source':<10} {'cold (initdb)':>14} {'warm (template)':>16} {'stop':>7}")
    for major in majors:
        source = resolve_binaries(major)
        shutil.rmtree(template_dir(source), ignore_errors=True)  # force a cold start
        cold, server = _timed(partial(provision, "local", major, source=source.kind))
        server.stop()
        warm_times, stop_times = [], []
        for _ in range(repeat):
            warm, server = _timed(partial(provision, "local", major, source=source.kind))
            stop, _ = _timed(server.stop)
            warm_times.append(warm)
            stop_times.append(stop)
        print(
            f"{major:>5} {source.kind:<10} {cold:>13.2f}s {statistics.median(warm_times):>15.2f}s "
            f"{statistics.median(stop_times):>6.2f}s"
        )


def bench_env(era: str) -> None:
    spec = f"langgraph-checkpoint-postgres=={era}"
    version_set = envs.parse_version_set(spec)
    with tempfile.TemporaryDirectory(prefix="lgm-bench-") as tmp:
        cache = Path(tmp)
        cold, _ = _timed(lambda: envs.ensure_env(version_set, cache=cache))
        warm, _ = _timed(lambda: envs.ensure_env(version_set, cache=cache))
    print(
        f"env {spec}: cold build {cold:.2f}s (uv download cache as found), "
        f"cached {warm * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--majors", default="", help="comma list (default: every local major)")
    parser.add_argument("--era", default="2.0.8")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    majors = [int(m) for m in args.majors.split(",") if m] or sorted(
        {s.major for s in list_sources(include_docker=False)}
    )
    print(f"machine: {os.cpu_count()} cores")
    bench_clusters(majors, args.repeat)
    bench_env(args.era)


if __name__ == "__main__":
    main()
