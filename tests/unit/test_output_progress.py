"""Progress of the long worker ops: worker files, the host's sum, its lines and idle clock."""

from __future__ import annotations

import os
import re
import time

from migrator.output.progress import ByteProgress, PartProgress, _duration
from migrator.worker import progressfile
from migrator.worker.progressfile import ProgressFile


def test_parts_are_summed_and_the_total_is_known_once_every_part_enumerated() -> None:
    with PartProgress("dump", 2, lambda _: None, every=3600) as meter:
        assert meter.state() == {"threads": 0, "checkpoints": 0, "of": None}
        first = ProgressFile(meter.path(0))
        first.total(10)
        first.advance(4, 40)
        first.finish()
        assert meter.state()["of"] is None  # part 1 has not said how many it has
        second = ProgressFile(meter.path(1), of=5)
        second.advance(5, 7)
        second.finish()
        assert meter.state() == {"threads": 9, "checkpoints": 47, "of": 15}
        line = meter.line(now=meter._started + 10)
        assert line == "dump: 9/15 threads (60.0%), 47 checkpoints, 5/s, about 7s left"
    assert not os.path.exists(meter.path(0))  # the files go with the context


def test_a_total_the_host_knows_wins() -> None:
    with PartProgress("restore", 1, lambda _: None, threads=200, every=3600) as meter:
        ProgressFile(meter.path(0), of=None).finish()
        assert meter.line(now=meter._started + 1).startswith("restore: 0/200 threads (0.0%)")


def test_worker_writes_at_most_once_per_interval_and_always_at_the_end(monkeypatch) -> None:
    monkeypatch.setattr(progressfile, "EVERY_S", 3600.0)
    with PartProgress("restore", 1, lambda _: None, every=3600) as meter:
        file = ProgressFile(meter.path(0), of=3)
        for _ in range(3):
            file.advance(1, 2)
        assert meter.state()["threads"] == 0  # counted, not yet written
        file.finish()
        assert meter.state() == {"threads": 3, "checkpoints": 6, "of": 3}


def test_idle_is_the_time_since_the_file_last_moved() -> None:
    with PartProgress("dump", 1, lambda _: None, every=3600) as meter:
        idle = meter.idle(0)
        assert idle() < 5  # no file yet: counted from the start
        file = ProgressFile(meter.path(0))
        past = time.time() - 120
        os.utime(meter.path(0), (past, past))
        assert idle() < 5  # never before the meter started
        meter._started = past - 60
        assert 115 < idle() < 130
        file.advance(1, 1)
        file.finish()
        assert idle() < 5


def test_lines_come_every_interval_and_say_when_nothing_moves() -> None:
    lines: list[str] = []
    with PartProgress("restore", 1, lines.append, threads=4, every=0.05) as meter:
        file = ProgressFile(meter.path(0), of=4)
        file.advance(1, 3)
        file.finish()
        deadline = time.monotonic() + 10
        while not any("no progress for" in line for line in lines):
            assert time.monotonic() < deadline, lines
            time.sleep(0.05)
    assert all(line.startswith("restore: ") for line in lines)
    assert any(re.match(r"restore: 1/4 threads \(25\.0%\), 3 checkpoints, ", x) for x in lines)


def test_durations_read_like_a_person_would_say_them() -> None:
    assert [_duration(s) for s in (0.2, 59.4, 61, 3599, 3600, 7325)] == [
        "0s",
        "59s",
        "1m01s",
        "59m59s",
        "1h00m",
        "2h02m",
    ]


def test_byte_progress_says_where_a_load_stands_every_interval() -> None:
    lines: list[str] = []
    meter = ByteProgress("loading checkpoint_blobs", 8 * 2**20, lines.append, every=3600)
    meter.add(2**20)
    assert lines == []  # not yet time
    meter._started -= 10
    assert meter.line(now=meter._started + 10) == (
        "loading checkpoint_blobs: 1/8 MiB (12.5%), 0 MiB/s, about 1m10s left"
    )
    meter.every = 0
    meter.add(7 * 2**20)
    assert len(lines) == 1 and lines[0].startswith("loading checkpoint_blobs: 8/8 MiB (100.0%)")
