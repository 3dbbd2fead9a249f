"""Per-camera shared-memory ring of raw frames (frames travel by reference, as in Frigate).

The capture process owns one ring per camera: ``slots`` frames of ``height x width x 3``
BGR bytes in a POSIX shared-memory block, each slot preceded by a small header. The stream
carries only ``(shm_name, slot, seq)``. A slot is protected like a seqlock: the writer marks
it busy, copies the pixels, then stamps the frame's sequence number; a reader copies the
pixels and checks the stamp before and after. A stamp that no longer matches means the
writer lapped the reader: the frame is gone and the reader counts a drop.

Restarts. A capture process that starts again takes over the block its predecessor left
(same name, same layout) instead of making a new one, and bumps the generation number in
the ring header. A block whose layout no longer fits is marked retired before it is
unlinked. Readers compare the generation they attached at with the header's and re-attach
as soon as it differs, so nobody keeps a deleted block mapped: in a size-limited /dev/shm
(a container's shm_size) the old and new blocks would otherwise both hold memory, and the
new block's first write would die with SIGBUS. The writer also allocates its block's pages
up front, so a /dev/shm that is too full gives a clear error at start, never a SIGBUS later.

Ordering: the seqlock and the generation rely on stores becoming visible in program order,
which x86 guarantees; on weakly ordered CPUs (ARM) a torn frame is possible in theory, and
the per-slot stamp re-check after the copy is what bounds it to one frame.
"""

from __future__ import annotations

import _posixshmem  # CPython's shm_open/shm_unlink, what multiprocessing.shared_memory uses
import errno
import hashlib
import math
import mmap
import os
import struct
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

_MAGIC = 0x48434652  # "HCFR"
_FORMAT_VERSION = 2  # 2: 64-byte header with a generation number
# magic, format version, slots, height, width, channels, generation
_HEADER = struct.Struct("<IIIIIIQ")
_HEADER_SIZE = 64  # padded, so slot 0 starts cache-line aligned
_GENERATION = struct.Struct("<Q")
_GENERATION_OFFSET = _HEADER.size - _GENERATION.size
_RETIRED = 2**64 - 1  # generation of a block whose writer has gone for good
_SLOT_HEADER = struct.Struct("<qd")  # seq (-1 while being written), capture_ts
_SLOT_HEADER_SIZE = 64  # keeps each slot's pixels cache-line aligned
_BUSY = -1
_SHM_FOLDER = "/dev/shm"  # where Linux keeps POSIX shared memory (checked for free space and staleness)
_SWEEP_INTERVAL_S = 1.0


class FrameGone(Exception):
    """The slot was overwritten (or is being written) before the reader got to it."""


class RingReplaced(FrameGone):
    """The ring's writer restarted or left: the reader must re-attach to read on."""


class FrameMemoryFull(OSError):
    """/dev/shm cannot hold a new ring (the container's shm_size is too small)."""

    def __str__(self) -> str:
        return str(self.strerror)


def ring_name(camera_id: str, namespace: str = "hybridcam") -> str:
    return f"{namespace}_{camera_id}"


def ring_namespace(redis_url: str) -> str:
    """The prefix of one stack's rings: the stack is its Redis, so two stacks on one host (a test
    run beside a demo, two sites) never write into each other's rings, while a restarted capture of
    the same stack takes its own rings over."""
    return f"hybridcam_{hashlib.sha1(redis_url.encode()).hexdigest()[:8]}"


def ring_bytes(width: int, height: int, slots: int) -> int:
    """Shared memory one camera's ring needs (size /dev/shm from this)."""
    return _HEADER_SIZE + slots * (_SLOT_HEADER_SIZE + width * height * 3)


RING_SPARE_SLOTS = 2  # the slot being written and one a slow reader may still be copying


def ring_slots_for(fps: float, seconds: float) -> int:
    """Slots a camera's ring needs so that a reader looking ``seconds`` behind the newest frame still
    finds its frame at ``fps``: the frames of that span plus the slot being written and one spare."""
    if fps <= 0 or seconds <= 0:
        raise ValueError("a ring is sized from a positive frame rate and a positive number of seconds")
    return max(4, math.ceil(fps * seconds) + RING_SPARE_SLOTS)


def ring_span_s(slots: int, fps: float) -> float:
    """How far behind the newest frame a reader can look in a ring of ``slots`` at ``fps``."""
    return max(0, slots - RING_SPARE_SLOTS) / fps if fps > 0 else 0.0


def check_shared_memory(rings: dict[str, int], folder: str = _SHM_FOLDER) -> None:
    """Raise FrameMemoryFull, in one sentence, when ``folder`` cannot hold these rings (name -> bytes)
    together; a ring already there under its name (a previous capture's) is counted as free."""
    free = shared_memory_free_bytes(folder)
    if free is None:
        return
    reclaimable = 0
    for name in rings:
        try:
            reclaimable += os.stat(os.path.join(folder, name)).st_size
        except OSError:
            pass
    needed = sum(rings.values())
    if needed > free + reclaimable:
        largest = max(rings.values(), default=0)
        raise FrameMemoryFull(
            errno.ENOSPC,
            f"shared memory is too small for the frame rings: {len(rings)} camera(s) need {needed / _MIB:.1f} MiB "
            f"(the largest ring {largest / _MIB:.1f} MiB), {folder} has {(free + reclaimable) / _MIB:.1f} MiB free; "
            "lower HYBRIDCAM_CAPTURE_RING_S (or set HYBRIDCAM_CAPTURE_RING_SLOTS) or raise STACK_FRAME_MEMORY (the shm_size)",
        )


def shared_memory_free_bytes(folder: str = _SHM_FOLDER) -> int | None:
    """Free bytes in the shared-memory folder; None where there is no such folder (not Linux)."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


@dataclass(frozen=True)
class _Layout:
    slots: int
    height: int
    width: int

    @property
    def frame_bytes(self) -> int:
        return self.height * self.width * 3

    @property
    def slot_stride(self) -> int:
        return _SLOT_HEADER_SIZE + self.frame_bytes

    @property
    def total_bytes(self) -> int:
        return ring_bytes(self.width, self.height, self.slots)

    def slot_offset(self, slot: int) -> int:
        return _HEADER_SIZE + slot * self.slot_stride


class _Block:
    """A POSIX shared-memory block, mapped. Not registered with multiprocessing's resource
    tracker: that would unlink capture's rings when capture is killed, under its readers."""

    def __init__(self, name: str, create_size: int = 0) -> None:
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create_size else 0)
        fd = _posixshmem.shm_open("/" + name, flags, mode=0o600)
        try:
            if create_size:
                os.ftruncate(fd, create_size)
            stats = os.fstat(fd)
            if stats.st_size < _HEADER_SIZE:
                raise ValueError(f"shared memory {name!r} is not a hybridcam frame ring")
            self.mmap = mmap.mmap(fd, stats.st_size)
        finally:
            os.close(fd)  # the mapping stays valid without the descriptor
        self.name = name
        self.size = stats.st_size
        self.inode = stats.st_ino
        self.buf = memoryview(self.mmap)

    def allocate(self) -> None:
        """Back every page now: a full /dev/shm raises here instead of a SIGBUS on first write."""
        fd = _posixshmem.shm_open("/" + self.name, os.O_RDWR, mode=0o600)
        try:
            os.posix_fallocate(fd, 0, self.size)
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.ENOMEM):
                free = shared_memory_free_bytes()
                raise FrameMemoryFull(
                    errno.ENOSPC,
                    f"shared memory is full: ring {self.name!r} needs {self.size / _MIB:.1f} MiB, "
                    f"{_SHM_FOLDER} has {(free or 0) / _MIB:.1f} MiB free (raise STACK_FRAME_MEMORY, the shm_size)",
                ) from None
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # file systems without fallocate
                raise
        finally:
            os.close(fd)

    def unlinked_or_replaced(self) -> bool:
        try:
            return os.stat(os.path.join(_SHM_FOLDER, self.name)).st_ino != self.inode
        except FileNotFoundError:
            return True
        except OSError:
            return False  # no /dev/shm folder to look in (not Linux): rely on the generation

    def close(self) -> None:
        try:
            self.buf.release()
            self.mmap.close()
        except BufferError:
            pass  # a borrowed frame still points into it: unmapped when that view goes

    def unlink(self) -> None:
        try:
            _posixshmem.shm_unlink("/" + self.name)
        except FileNotFoundError:
            pass


_MIB = 1024 * 1024


@dataclass(frozen=True)
class _Header:
    magic: int
    version: int
    slots: int
    height: int
    width: int
    channels: int
    generation: int

    def describes(self, layout: _Layout, size: int) -> bool:
        return (
            (self.magic, self.version, self.channels) == (_MAGIC, _FORMAT_VERSION, 3)
            and (self.slots, self.height, self.width) == (layout.slots, layout.height, layout.width)
            and size == layout.total_bytes
        )


def _read_header(block: _Block) -> _Header:
    return _Header(*_HEADER.unpack_from(block.buf, 0))


def _generation(block: _Block) -> int:
    return int(_GENERATION.unpack_from(block.buf, _GENERATION_OFFSET)[0])


class _Ring:
    def __init__(self, block: _Block, layout: _Layout) -> None:
        self.block = block
        self.layout = layout
        buf = block.buf
        self._headers = [
            buf[layout.slot_offset(i) : layout.slot_offset(i) + _SLOT_HEADER.size] for i in range(layout.slots)
        ]
        self._pixels = [
            np.ndarray(
                (layout.height, layout.width, 3),
                dtype=np.uint8,
                buffer=buf,
                offset=layout.slot_offset(i) + _SLOT_HEADER_SIZE,
            )
            for i in range(layout.slots)
        ]
        self.closed = False

    def _release_views(self) -> None:
        for view in self._headers:
            view.release()
        self._headers = []
        self._pixels = []
        self.closed = True


class FrameRingWriter(_Ring):
    """Owned by capture: writes frames round-robin into the ring.

    Takes over a block of the same name and layout left by a previous capture process
    (``reused`` says so) and starts a new generation in it; a block that does not fit is
    retired (its readers let go of it) and replaced.
    """

    def __init__(self, name: str, width: int, height: int, slots: int = 8) -> None:
        if slots < 2:
            raise ValueError("a frame ring needs at least 2 slots")
        layout = _Layout(slots, height, width)
        block, previous_generation, self.reused = _take_over_or_create(name, layout)
        super().__init__(block, layout)
        for header in self._headers:
            _SLOT_HEADER.pack_into(header, 0, _BUSY, 0.0)
        self.name = name
        self.generation = previous_generation % (_RETIRED - 1) + 1
        # Published last: from here on every reader attached before sees the change and re-attaches.
        _GENERATION.pack_into(block.buf, _GENERATION_OFFSET, self.generation)
        self._next = 0

    def write(self, frame: np.ndarray, seq: int, capture_ts: float) -> int:
        """Copy a BGR frame into the next slot; return the slot index."""
        if frame.shape != (self.layout.height, self.layout.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"frame of shape {frame.shape} {frame.dtype} does not fit ring "
                f"{self.layout.height}x{self.layout.width}x3 uint8"
            )
        slot = self._next
        header = self._headers[slot]
        _SLOT_HEADER.pack_into(header, 0, _BUSY, capture_ts)
        np.copyto(self._pixels[slot], frame)
        _SLOT_HEADER.pack_into(header, 0, seq, capture_ts)
        self._next = (slot + 1) % self.layout.slots
        return slot

    def begin(self) -> tuple[int, np.ndarray]:
        """Reserve the next slot and return a writable view of it, to render or decode
        straight into shared memory (no extra copy). Finish with :meth:`commit`."""
        slot = self._next
        _SLOT_HEADER.pack_into(self._headers[slot], 0, _BUSY, 0.0)
        return slot, self._pixels[slot]

    def commit(self, slot: int, seq: int, capture_ts: float) -> None:
        _SLOT_HEADER.pack_into(self._headers[slot], 0, seq, capture_ts)
        self._next = (slot + 1) % self.layout.slots

    def close(self, unlink: bool = True) -> None:
        """Stop writing. ``unlink`` (a clean stop) retires the ring so every reader lets go of it
        now, then removes it; without it the block stays for the next capture process."""
        if self.closed:
            return
        if unlink:
            _GENERATION.pack_into(self.block.buf, _GENERATION_OFFSET, _RETIRED)
        self._release_views()
        self.block.close()
        if unlink:
            self.block.unlink()


def _take_over_or_create(name: str, layout: _Layout) -> tuple[_Block, int, bool]:
    """(block, its last generation, reused): the block a previous writer left when it fits."""
    try:
        existing = _Block(name)
    except FileNotFoundError:
        existing = None
    except ValueError:  # an empty or foreign block under our name
        _posixshmem.shm_unlink("/" + name)
        existing = None
    previous = 0
    if existing is not None:
        header = _read_header(existing)
        if header.describes(layout, existing.size):
            existing.allocate()
            return existing, 0 if header.generation == _RETIRED else header.generation, True
        if header.magic == _MAGIC and header.version == _FORMAT_VERSION:
            previous = 0 if header.generation == _RETIRED else header.generation
            _GENERATION.pack_into(existing.buf, _GENERATION_OFFSET, _RETIRED)
        existing.close()
        existing.unlink()
    block = _Block(name, create_size=layout.total_bytes)
    try:
        block.allocate()
    except OSError:
        block.close()
        block.unlink()
        raise
    _HEADER.pack_into(block.buf, 0, _MAGIC, _FORMAT_VERSION, layout.slots, layout.height, layout.width, 3, previous)
    return block, previous, False


class FrameRingReader(_Ring):
    """Used by consumers: copies a referenced frame out, or reports it gone."""

    def __init__(self, name: str) -> None:
        block = _Block(name)
        header = _read_header(block)
        if header.magic != _MAGIC or header.channels != 3 or header.version != _FORMAT_VERSION:
            block.close()
            raise ValueError(f"shared memory {name!r} is not a hybridcam frame ring")
        if header.generation == _RETIRED:
            block.close()
            raise RingReplaced(f"frame ring {name!r} is being replaced")
        layout = _Layout(header.slots, header.height, header.width)
        if block.size < layout.total_bytes:
            block.close()
            raise ValueError(f"shared memory {name!r} is smaller than its header says")
        super().__init__(block, layout)
        self.name = name
        self.generation = header.generation

    def replaced(self) -> bool:
        """The writer restarted or left since this reader attached (re-attach to read on)."""
        return self.closed or _generation(self.block) != self.generation

    def stale(self) -> bool:
        """Replaced, or the name now points to another block (or to none)."""
        return self.replaced() or self.block.unlinked_or_replaced()

    def read(self, slot: int, seq: int, out: np.ndarray | None = None, capture_ts: float | None = None) -> np.ndarray:
        """Copy frame ``seq`` from ``slot`` (into ``out`` when given); raise FrameGone if lapped.

        With ``capture_ts`` the slot must also hold the frame captured then: sequence numbers restart
        with capture, so a reference from before a restart can name a slot and seq a new frame now has.
        """
        if self.replaced():
            raise RingReplaced(f"frame ring {self.name!r} has a new writer")
        if not 0 <= slot < self.layout.slots:
            raise FrameGone(f"slot {slot} outside ring of {self.layout.slots}")
        if not self.holds(slot, seq, capture_ts):
            raise FrameGone(f"slot {slot} no longer holds frame {seq}" + (f" of {capture_ts!r}" if capture_ts else ""))
        if out is None:
            out = np.empty_like(self._pixels[slot])
        np.copyto(out, self._pixels[slot])
        if not self.holds(slot, seq, capture_ts):
            raise FrameGone(f"slot {slot} was overwritten while frame {seq} was read")
        return out

    def view(self, slot: int, seq: int, capture_ts: float | None = None) -> np.ndarray:
        """Zero-copy, read-only view of frame ``seq``; check :meth:`holds` after using it."""
        if self.replaced():
            raise RingReplaced(f"frame ring {self.name!r} has a new writer")
        if not 0 <= slot < self.layout.slots or not self.holds(slot, seq, capture_ts):
            raise FrameGone(f"slot {slot} no longer holds frame {seq}")
        view = self._pixels[slot].view()
        view.flags.writeable = False
        return view

    def holds(self, slot: int, seq: int, capture_ts: float | None = None) -> bool:
        if self.closed:
            return False
        held_seq, held_ts = _SLOT_HEADER.unpack_from(self._headers[slot], 0)
        return bool(held_seq == seq and (capture_ts is None or held_ts == capture_ts))

    def slot_seq(self, slot: int) -> int:
        """Sequence number of the frame the slot holds now."""
        return int(_SLOT_HEADER.unpack_from(self._headers[slot], 0)[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.layout.height, self.layout.width, 3)

    def close(self) -> None:
        if not self.closed:
            self._release_views()
            self.block.close()


class FrameFetcher:
    """Turns a FrameRef into pixels: from the shared-memory ring on this host, else from its JPEG.

    Rings are attached once and kept. When a ring's writer restarts (its generation changes)
    or the ring is removed, the reader lets go of it: on the next read of that ring, and for
    every ring at most a second later (:meth:`release_stale`, also run from fetch/borrow), so a
    replaced block is never kept mapped.
    """

    def __init__(self) -> None:
        self._readers: dict[str, FrameRingReader] = {}
        self._next_sweep = 0.0
        self.reattached = 0

    def fetch(self, ref: FrameRefLike, out: np.ndarray | None = None) -> np.ndarray:
        self._sweep_due()
        if ref.shm_name is not None and ref.slot is not None:
            try:
                return self._read_shared(ref.shm_name, ref.slot, ref.seq, out, ref.capture_ts)
            except FileNotFoundError:
                if ref.jpeg is None:
                    raise FrameGone(f"frame ring {ref.shm_name!r} does not exist on this host") from None
        if ref.jpeg is not None:
            return decode_jpeg(ref.jpeg, (ref.height, ref.width))
        raise FrameGone("frame reference carries neither a ring slot nor a JPEG")

    def borrow(self, ref: FrameRefLike) -> BorrowedFrame:
        """Pixels without a copy where the ring is on this host (a JPEG is decoded otherwise).

        The writer may lap the reader while the pixels are in use: call
        ``still_valid()`` after using them and discard the result if it is False.
        """
        self._sweep_due()
        if ref.shm_name is not None and ref.slot is not None:
            try:
                reader = self._reader(ref.shm_name)
                try:
                    return BorrowedFrame(reader.view(ref.slot, ref.seq, ref.capture_ts), reader, ref.slot, ref.seq, ref.capture_ts)
                except RingReplaced:
                    reader = self._reattach(ref.shm_name)
                    return BorrowedFrame(reader.view(ref.slot, ref.seq, ref.capture_ts), reader, ref.slot, ref.seq, ref.capture_ts)
            except FileNotFoundError:
                if ref.jpeg is None:
                    raise FrameGone(f"frame ring {ref.shm_name!r} does not exist on this host") from None
        return BorrowedFrame(self.fetch(ref), None, 0, 0)

    def lapped(self, ref: FrameRefLike) -> bool:
        """True when an attached ring's slot already holds a newer frame than ``ref``: the frame is
        gone, and a reader that fell behind can skip it without touching (or re-attaching) the ring."""
        reader = self._readers.get(ref.shm_name) if ref.shm_name is not None else None
        if reader is None or ref.slot is None or not 0 <= ref.slot < reader.layout.slots:
            return False
        return reader.slot_seq(ref.slot) > ref.seq

    def ring_slots(self, name: str | None) -> int | None:
        """Slots of an attached ring (None before the first read of it)."""
        reader = self._readers.get(name) if name is not None else None
        return reader.layout.slots if reader is not None else None

    def release_stale(self) -> int:
        """Let go of every ring that was replaced or removed; return how many."""
        stale = [name for name, reader in self._readers.items() if reader.stale()]
        for name in stale:
            self._readers.pop(name).close()
        return len(stale)

    def attached(self) -> list[str]:
        return sorted(self._readers)

    def _sweep_due(self) -> None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + _SWEEP_INTERVAL_S
            self.release_stale()

    def _reader(self, name: str) -> FrameRingReader:
        reader = self._readers.get(name)
        if reader is None:
            reader = self._readers[name] = FrameRingReader(name)
        return reader

    def _reattach(self, name: str) -> FrameRingReader:
        old = self._readers.pop(name, None)
        if old is not None:
            old.close()
            self.reattached += 1
        reader = self._readers[name] = FrameRingReader(name)
        return reader

    def _read_shared(self, name: str, slot: int, seq: int, out: np.ndarray | None, capture_ts: float) -> np.ndarray:
        try:
            return self._reader(name).read(slot, seq, out, capture_ts)
        except RingReplaced:
            return self._reattach(name).read(slot, seq, out, capture_ts)

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()


@dataclass
class BorrowedFrame:
    pixels: np.ndarray
    reader: FrameRingReader | None
    slot: int
    seq: int
    capture_ts: float | None = None

    def still_valid(self) -> bool:
        return self.reader is None or self.reader.holds(self.slot, self.seq, self.capture_ts)


class FrameRefLike(Protocol):  # structural type of shared.schemas.FrameRef, kept import-free
    @property
    def shm_name(self) -> str | None: ...
    @property
    def slot(self) -> int | None: ...
    @property
    def seq(self) -> int: ...
    @property
    def capture_ts(self) -> float: ...
    @property
    def jpeg(self) -> bytes | None: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...


def decode_jpeg(data: bytes, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Decode JPEG bytes to BGR; a corrupt or mis-sized image raises ValueError."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("frame bytes are not a decodable image")
    if expected_hw is not None and image.shape[:2] != expected_hw:
        raise ValueError(f"frame is {image.shape[1]}x{image.shape[0]}, reference says {expected_hw[1]}x{expected_hw[0]}")
    return image


def encode_jpeg(frame: np.ndarray, quality: int = 85) -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("frame could not be JPEG-encoded")
    return data.tobytes()
