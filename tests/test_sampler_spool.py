"""The sampler's on-disk spool: order, bounds (oldest dropped first, counted), restart survival."""

from __future__ import annotations

from pathlib import Path

from services.sampler.kinesis_sender import OutgoingRecord
from services.sampler.spool import Spool


def record(index: int, size: int = 50, camera: str = "cam1") -> OutgoingRecord:
    return OutgoingRecord(camera, index.to_bytes(4, "big") + bytes(size - 4))


def indexes(records: list[OutgoingRecord]) -> list[int]:
    return [int.from_bytes(r.data[:4], "big") for r in records]


def test_records_come_back_oldest_first_with_their_partition_key(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_records=100, max_bytes=10**6)
    for i in range(5):
        spool.append(record(i, camera=f"cam{i % 2}"))
    oldest = spool.oldest(3, 10**6)
    assert indexes(oldest) == [0, 1, 2] and [r.partition_key for r in oldest] == ["cam0", "cam1", "cam0"]
    spool.remove(oldest)
    assert len(spool) == 2 and indexes(spool.oldest(10, 10**6)) == [3, 4]


def test_oldest_respects_the_byte_limit_but_always_returns_one(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_records=100, max_bytes=10**6)
    for i in range(4):
        spool.append(record(i, size=1000))
    assert indexes(spool.oldest(10, 2500)) == [0, 1]
    assert indexes(spool.oldest(10, 10)) == [0]


def test_a_tiny_record_bound_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_records=3, max_bytes=10**6)
    for i in range(7):
        spool.append(record(i))
    assert len(spool) == 3 and spool.dropped == 4 and spool.spooled == 7
    assert indexes(spool.oldest(10, 10**6)) == [4, 5, 6]
    assert len(list(tmp_path.glob("*.rec"))) == 3


def test_a_tiny_byte_bound_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_records=1000, max_bytes=1000)  # room for 4 records of 200 (+ key header)
    for i in range(10):
        spool.append(record(i, size=200))
    assert spool.bytes <= 1000 and len(spool) == 4 and spool.dropped == 6
    assert indexes(spool.oldest(10, 10**6)) == [6, 7, 8, 9]


def test_a_record_larger_than_the_spool_is_dropped_not_stored(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_records=10, max_bytes=500)
    spool.append(record(1))
    spool.append(record(2, size=600))
    assert indexes(spool.oldest(10, 10**6)) == [1] and spool.dropped == 1


def test_the_spool_survives_a_restart_and_keeps_its_order(tmp_path: Path) -> None:
    first = Spool(tmp_path, max_records=100, max_bytes=10**6)
    for i in range(4):
        first.append(record(i))
    first.remove(first.oldest(1, 10**6))
    (tmp_path / "00000000000000000099.tmp").write_bytes(b"half a rec")  # a write cut short by a crash

    second = Spool(tmp_path, max_records=100, max_bytes=10**6)
    assert len(second) == 3 and second.bytes == first.bytes
    second.append(record(10))
    assert indexes(second.oldest(10, 10**6)) == [1, 2, 3, 10]
    assert not list(tmp_path.glob("*.tmp"))


def test_removing_part_of_a_batch_keeps_the_rest_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_records=100, max_bytes=10**6)
    for i in range(5):
        spool.append(record(i))
    batch = spool.oldest(5, 10**6)
    spool.remove([batch[0], batch[2]])  # accepted; 1, 3 and 4 were refused and wait for the next try
    assert indexes(spool.oldest(10, 10**6)) == [1, 3, 4]


def test_an_unreadable_record_is_dropped_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_records=100, max_bytes=10**6)
    spool.append(record(1))
    spool.append(record(2))
    broken = sorted(tmp_path.glob("*.rec"))[0]
    broken.write_bytes(b"\xff")  # shorter than the key-length header
    assert indexes(spool.oldest(10, 10**6)) == [2] and spool.dropped == 1 and len(spool) == 1
