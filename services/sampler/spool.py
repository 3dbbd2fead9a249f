"""A bounded on-disk spool for records the cloud did not take (it was unreachable or kept refusing).

One file per record, named by a growing number, so the directory listing is the replay order
and a restarted sampler finds everything it spooled. A record is written to a temporary file,
flushed to disk and renamed into place before :meth:`Spool.append` returns: once the
sampler acknowledges a frame after spooling it, a crash cannot lose it. When the spool is over
its bound (bytes or records), the oldest records are dropped first and counted.
"""

from __future__ import annotations

import logging
import os
import struct
from collections import OrderedDict
from pathlib import Path

from services.sampler.kinesis_sender import OutgoingRecord

log = logging.getLogger(__name__)

SUFFIX = ".rec"
_KEY_LENGTH = struct.Struct("<H")


class Spool:
    def __init__(self, directory: Path, max_records: int, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.max_records = max_records
        self.directory.mkdir(parents=True, exist_ok=True)
        self._sizes: OrderedDict[int, int] = OrderedDict()  # number -> bytes on disk, oldest first
        self.bytes = 0
        self.dropped = 0
        self.spooled = 0
        self._last_number = 0
        self._load()

    def __len__(self) -> int:
        return len(self._sizes)

    def _path(self, number: int) -> Path:
        return self.directory / f"{number:020d}{SUFFIX}"

    def _load(self) -> None:
        for leftover in self.directory.glob("*.tmp"):  # a write that never completed was never acknowledged
            leftover.unlink(missing_ok=True)
        numbers = sorted(int(path.stem) for path in self.directory.glob(f"*{SUFFIX}") if path.stem.isdigit())
        self._last_number = numbers[-1] if numbers else 0
        for number in numbers:
            size = self._path(number).stat().st_size
            self._sizes[number] = size
            self.bytes += size
        if numbers:
            log.info("spool %s holds %d records (%.1f MB) from an earlier run; they are sent first",
                     self.directory, len(numbers), self.bytes / 1e6)

    def append(self, record: OutgoingRecord) -> None:
        """Write a record durably after the others; drop the oldest ones beyond the bound."""
        self.extend([record])

    def extend(self, records: list[OutgoingRecord]) -> None:
        """Write records durably, in order (one directory sync for all)."""
        for record in records:
            blob = _KEY_LENGTH.pack(len(record.partition_key.encode())) + record.partition_key.encode() + record.data
            if len(blob) > self.max_bytes:
                self.dropped += 1
                log.warning("a %d byte record is larger than the whole spool (%d bytes); dropped", len(blob), self.max_bytes)
                continue
            while self._sizes and (len(self._sizes) >= self.max_records or self.bytes + len(blob) > self.max_bytes):
                self._drop_oldest()
            number = self._last_number + 1
            self._write(number, blob)
            self._sizes[number] = len(blob)
            self.bytes += len(blob)
            self.spooled += 1
        self._sync_directory()

    def _write(self, number: int, blob: bytes) -> None:
        temporary = self.directory / f"{number:020d}.tmp"
        with temporary.open("wb") as file:
            file.write(blob)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(self._path(number))
        self._last_number = number

    def _sync_directory(self) -> None:
        descriptor = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def _drop_oldest(self) -> None:
        number, size = self._sizes.popitem(last=False)
        self._path(number).unlink(missing_ok=True)
        self.bytes -= size
        self.dropped += 1

    def oldest(self, max_records: int, max_bytes: int) -> list[OutgoingRecord]:
        """Up to max_records of the oldest records (at least one), within max_bytes, oldest first.

        Each record's ``token`` is its place in the spool, for :meth:`remove`."""
        out: list[OutgoingRecord] = []
        total = 0
        for number, size in list(self._sizes.items()):
            if out and (len(out) >= max_records or total + size > max_bytes):
                break
            record = self._read(number)
            if record is not None:
                out.append(record)
                total += size
        return out

    def _read(self, number: int) -> OutgoingRecord | None:
        try:
            blob = self._path(number).read_bytes()
            (key_length,) = _KEY_LENGTH.unpack_from(blob, 0)
            key = blob[_KEY_LENGTH.size:_KEY_LENGTH.size + key_length].decode()
            return OutgoingRecord(key, blob[_KEY_LENGTH.size + key_length:], token=number)
        except (OSError, struct.error, UnicodeDecodeError) as error:
            log.warning("spooled record %s is unreadable (%s); dropped", self._path(number).name, error)
            self._forget(number)
            self.dropped += 1
            return None

    def remove(self, records: list[OutgoingRecord]) -> None:
        """Forget records that were delivered (those :meth:`oldest` returned)."""
        for record in records:
            if isinstance(record.token, int):
                self._forget(record.token)

    def _forget(self, number: int) -> None:
        size = self._sizes.pop(number, None)
        if size is not None:
            self._path(number).unlink(missing_ok=True)
            self.bytes -= size
