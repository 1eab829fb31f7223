"""The trade journal: group commit, replay, torn tails, rotation, failures and a real crash."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import wait
from pathlib import Path

import pytest

from exchange import journal as journal_module
from exchange.journal import HEADER, Journal, JournalClosed, JournalCorrupt

REPO_ROOT = Path(__file__).resolve().parents[1]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("journal-*.log"))


def write(directory: Path, records: list[bytes], **kwargs: object) -> Journal:
    """A started journal with `records` appended one group at a time, then closed."""
    journal = Journal(directory, **kwargs)
    journal.start()
    for record in records:
        journal.append(record).result(timeout=5)
    journal.close()
    return journal


def test_round_trip_numbers_records_from_one(tmp_path: Path) -> None:
    journal = write(tmp_path, [b"a", b"bb", b""])
    assert journal.last_seq == 3
    reopened = Journal(tmp_path)
    assert reopened.journal_id == journal.journal_id
    assert len(reopened.journal_id) == 32
    assert reopened.last_seq == 3
    assert list(reopened.replay()) == [(1, b"a"), (2, b"bb"), (3, b"")]


def test_a_group_shares_one_future_resolved_with_its_last_seq(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    futures = [journal.append(b"r%d" % i) for i in range(5)]  # not started: one group
    assert all(f is futures[0] for f in futures)
    assert not futures[0].done()
    journal.start()
    assert futures[0].result(timeout=5) == 5
    later = journal.append(b"r5")
    assert later is not futures[0]
    assert later.result(timeout=5) == 6
    journal.close()


def test_order_is_preserved_across_groups(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.start()
    records = [os.urandom(i % 50) for i in range(2000)]
    wait([journal.append(r) for r in records], timeout=10)
    journal.close()
    assert list(Journal(tmp_path).replay()) == list(enumerate(records, 1))


def test_reopen_continues_numbering_and_replay_skips(tmp_path: Path) -> None:
    write(tmp_path, [b"1", b"2", b"3"])
    journal = write(tmp_path, [b"4", b"5"])
    assert journal.last_seq == 5
    reopened = Journal(tmp_path)
    assert list(reopened.replay(after_seq=3)) == [(4, b"4"), (5, b"5")]
    assert list(reopened.replay(after_seq=5)) == []
    assert list(Journal(tmp_path / "empty").replay()) == []


@pytest.mark.parametrize(
    "damage",
    ["cut in header", "cut in payload", "flipped payload byte"],
)
def test_a_torn_tail_is_truncated_with_a_warning(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path, [b"one", b"two", b"three"])
    (path,) = segments(tmp_path)
    data = path.read_bytes()
    last = len(data) - HEADER.size - len(b"three")
    if damage == "cut in header":
        path.write_bytes(data[: last + 5])
    elif damage == "cut in payload":
        path.write_bytes(data[:-2])
    else:
        path.write_bytes(data[:-1] + b"X")
    with caplog.at_level(logging.WARNING, logger="attnx.journal"):
        journal = Journal(tmp_path)
    assert "torn tail" in caplog.text
    assert path.stat().st_size == last
    assert journal.last_seq == 2
    assert list(journal.replay()) == [(1, b"one"), (2, b"two")]
    journal.start()
    assert journal.append(b"new").result(timeout=5) == 3
    journal.close()
    assert list(Journal(tmp_path).replay()) == [(1, b"one"), (2, b"two"), (3, b"new")]


def test_a_journal_left_with_an_empty_newest_segment_reuses_it(tmp_path: Path) -> None:
    write(tmp_path, [b"one"])
    (tmp_path / f"journal-{2:020d}.log").touch()  # a crash right after creating a segment
    journal = write(tmp_path, [b"two"])
    assert journal.last_seq == 2
    assert len(segments(tmp_path)) == 2
    assert list(Journal(tmp_path).replay()) == [(1, b"one"), (2, b"two")]


def flip_byte_in_first_record(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[HEADER.size] ^= 0xFF
    path.write_bytes(bytes(data))


def test_damage_before_the_tail_of_the_newest_segment_is_corruption(tmp_path: Path) -> None:
    write(tmp_path, [b"one", b"two"], segment_bytes=1)
    write(tmp_path, [b"three", b"four"])  # one segment holding 3 and 4
    newest = segments(tmp_path)[-1]
    flip_byte_in_first_record(newest)
    with pytest.raises(JournalCorrupt, match=rf"{newest.name} at byte 0: CRC mismatch"):
        Journal(tmp_path)


def test_damage_in_an_older_segment_is_corruption(tmp_path: Path) -> None:
    write(tmp_path, [b"one", b"two", b"three"], segment_bytes=1)
    first, second, _ = segments(tmp_path)
    flip_byte_in_first_record(second)
    journal = Journal(tmp_path)
    replay = journal.replay()
    assert next(replay) == (1, b"one")
    with pytest.raises(JournalCorrupt, match=rf"{second.name} at byte 0: CRC mismatch"):
        next(replay)
    first.write_bytes(b"")  # an older segment that lost its records
    with pytest.raises(JournalCorrupt, match=rf"{first.name} at byte 0: ends at seq 0, 1 was"):
        list(journal.replay())


def test_rotation_release_and_replay_across_segments(tmp_path: Path) -> None:
    records = [b"%03d" % i + b"x" * 40 for i in range(1, 31)]
    journal = Journal(tmp_path, segment_bytes=200)  # rotates after every 4th record
    journal.start()
    for record in records:
        journal.append(record).result(timeout=5)
    firsts = [int(p.stem[8:]) for p in segments(tmp_path)]
    assert firsts == [1, 5, 9, 13, 17, 21, 25, 29]
    journal.release(12)  # segments 1-4, 5-8 and 9-12 go; 13-16 holds 13 > 12
    assert [int(p.stem[8:]) for p in segments(tmp_path)] == firsts[3:]
    journal.release(30)  # all released, but the segment being written stays
    assert [int(p.stem[8:]) for p in segments(tmp_path)] == [29]
    assert journal.append(b"more").result(timeout=5) == 31
    journal.close()
    assert list(Journal(tmp_path).replay()) == [(29, records[28]), (30, records[29]), (31, b"more")]


def test_replay_spans_segments_and_skips_released_ones(tmp_path: Path) -> None:
    records = [b"r%d" % i for i in range(1, 21)]
    write(tmp_path, records, segment_bytes=60)
    assert len(segments(tmp_path)) > 3
    journal = Journal(tmp_path)
    assert list(journal.replay()) == list(enumerate(records, 1))
    assert list(journal.replay(after_seq=13)) == list(enumerate(records, 1))[13:]
    journal.release(10)
    assert list(journal.replay(after_seq=13)) == list(enumerate(records, 1))[13:]


def test_the_sink_sees_every_record_once_in_order_before_the_future(tmp_path: Path) -> None:
    seen: list[tuple[int, bytes]] = []
    journal = Journal(tmp_path, sink=seen.extend)
    journal.start()
    records = [b"r%d" % i for i in range(500)]
    for i, record in enumerate(records):
        future = journal.append(record)
        if i % 7 == 0:
            assert future.result(timeout=5) == i + 1
            assert seen[-1][0] == i + 1  # the sink has already seen the group
    journal.close()
    assert seen == list(enumerate(records, 1))


def test_a_raising_sink_is_logged_and_the_future_still_resolves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def sink(group: list[tuple[int, bytes]]) -> None:
        raise ValueError("consumer down")

    journal = Journal(tmp_path, sink=sink)
    journal.start()
    with caplog.at_level(logging.ERROR, logger="attnx.journal"):
        assert journal.append(b"a").result(timeout=5) == 1
    assert "journal sink failed on seqs 1..1" in caplog.text
    assert "consumer down" in caplog.text
    assert journal.append(b"b").result(timeout=5) == 2
    journal.close()


@pytest.mark.parametrize("started", [True, False])
def test_close_flushes_pending_records_and_is_idempotent(tmp_path: Path, started: bool) -> None:
    journal = Journal(tmp_path)
    if started:
        journal.start()
    futures = [journal.append(b"r%d" % i) for i in range(100)]
    journal.close()
    assert all(f.done() for f in futures)
    assert futures[-1].result() == 100
    journal.close()
    with pytest.raises(JournalClosed):
        journal.append(b"late")
    assert [seq for seq, _ in Journal(tmp_path).replay()] == list(range(1, 101))


def test_a_failing_write_fails_its_group_and_those_queued_behind_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    writing, go = threading.Event(), threading.Event()

    def failing_write(fd: int, data: bytes) -> int:
        if threading.current_thread().name != "journal-writer":
            return real_write(fd, data)
        writing.set()
        go.wait(5)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal_module.os, "write", failing_write)
    journal = Journal(tmp_path)
    journal.start()
    first = journal.append(b"a")
    assert writing.wait(5)
    behind = journal.append(b"b")  # queued during the failing write
    go.set()
    assert isinstance(first.exception(timeout=5), OSError)
    assert isinstance(behind.exception(timeout=5), OSError)
    with pytest.raises(JournalClosed):
        journal.append(b"c")
    journal.close()


def test_a_running_journal_reads_back_synced_records_for_a_consumer_that_fell_behind(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path, segment_bytes=512)
    journal.start()
    for i in range(300):
        last = journal.append(b"record %d" % i)
    last.result(timeout=5)
    got = list(journal.durable_records(after_seq=120))
    assert [seq for seq, _ in got] == list(range(121, 301))
    assert got[0][1] == b"record 120"
    journal.release(200)
    assert [seq for seq, _ in journal.durable_records(after_seq=250)] == list(range(251, 301))
    journal.close()


def test_a_flipped_length_field_is_not_taken_for_a_torn_tail(tmp_path: Path) -> None:
    """The CRC covers the length too: a corrupt length in a middle record is corruption,
    not a tail to cut away (which would lose the acknowledged records after it)."""
    journal = Journal(tmp_path)
    journal.start()
    for _ in range(3):
        journal.append(b"x" * 20).result(timeout=5)
    journal.close()
    (segment,) = tmp_path.glob("journal-*.log")
    data = bytearray(segment.read_bytes())
    data[0] ^= 0x01  # the first record's length: 20 -> 21
    segment.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt, match="at byte 0"):
        Journal(tmp_path)


def test_concurrent_appends_get_unique_contiguous_seqs(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.start()
    futures: list[list] = [[] for _ in range(4)]

    def appender(t: int) -> None:
        futures[t] = [journal.append(b"%d:%d" % (t, i)) for i in range(5000)]

    threads = [threading.Thread(target=appender, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait([f for fs in futures for f in fs], timeout=10)
    journal.close()
    replayed = list(Journal(tmp_path).replay())
    assert [seq for seq, _ in replayed] == list(range(1, 20001))
    for t in range(4):  # every record once, each thread's in the order it appended them
        mine = [r for _, r in replayed if r.startswith(b"%d:" % t)]
        assert mine == [b"%d:%d" % (t, i) for i in range(5000)]


CRASH_CHILD = """
import random, sys
from pathlib import Path
from exchange.journal import Journal

journal = Journal(Path(sys.argv[1]), segment_bytes=8192)
journal.start()
n = 0
while True:
    for _ in range(random.randint(1, 20)):
        n += 1
        future = journal.append(b"%d:" % n + b"x" * (n % 300))
    print(future.result(), flush=True)
"""


def test_every_acknowledged_record_survives_sigkill(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CRASH_CHILD, str(tmp_path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        acked = []
        for _ in range(300):
            line = child.stdout.readline()
            assert line, child.stderr.read().decode()
            acked.append(int(line))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        child.stderr.close()
    assert acked == sorted(acked)
    replayed = list(Journal(tmp_path).replay())
    assert len(replayed) >= acked[-1]
    assert replayed == [(n, b"%d:" % n + b"x" * (n % 300)) for n in range(1, len(replayed) + 1)]


def test_a_sync_window_bounds_the_syncs_and_an_idle_journal_syncs_at_once(tmp_path: Path) -> None:
    window = 0.05
    groups: list[list[tuple[int, bytes]]] = []
    journal = Journal(tmp_path, sink=groups.append, sync_window_s=window)
    journal.start()
    t0 = time.monotonic()
    assert journal.append(b"first").result(timeout=5) == 1
    assert time.monotonic() - t0 < window  # nothing synced lately: no wait
    futures, t0 = [], time.monotonic()
    while time.monotonic() - t0 < 0.3:  # a record every 2 ms, ~150 in all
        futures.append(journal.append(b"x"))
        time.sleep(0.002)
    assert futures[-1].result(timeout=5) == len(futures) + 1
    elapsed = time.monotonic() - t0
    journal.close()
    assert [seq for group in groups for seq, _ in group] == list(range(1, len(futures) + 2))
    # one sync per window at most (without the window each record would get its own)
    assert len(groups) - 1 <= elapsed / window + 2, [len(g) for g in groups]
