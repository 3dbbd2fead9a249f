"""Per-camera shared-memory ring of raw frames (frames travel by reference, as in Frigate).

The capture process owns one ring per camera: ``slots`` frames of ``height x width x 3``
BGR bytes in a POSIX shared-memory block, each slot preceded by a small header. The stream
carries only ``(shm_name, slot, seq)``. A slot is protected like a seqlock: the writer marks
it busy, copies the pixels, then stamps the frame's sequence number; a reader copies the
pixels and checks the stamp before and after. A stamp that no longer matches means the
writer lapped the reader: the frame is gone and the reader counts a drop.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from multiprocessing import resource_tracker, shared_memory
from typing import Protocol

import numpy as np

_MAGIC = 0x48434652  # "HCFR"
_HEADER = struct.Struct("<IIIII")  # magic, slots, height, width, channels
_SLOT_HEADER = struct.Struct("<qd")  # seq (-1 while being written), capture_ts
_SLOT_HEADER_SIZE = 64  # keeps each slot's pixels cache-line aligned
_BUSY = -1
_CREATED_HERE: set[str] = set()  # rings this process owns (and the resource tracker should unlink)


class FrameGone(Exception):
    """The slot was overwritten (or is being written) before the reader got to it."""


def ring_name(camera_id: str, namespace: str = "hybridcam") -> str:
    return f"{namespace}_{camera_id}"


def ring_bytes(width: int, height: int, slots: int) -> int:
    """Shared memory one camera's ring needs (size /dev/shm from this)."""
    return _HEADER.size + slots * (_SLOT_HEADER_SIZE + width * height * 3)


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

    def slot_offset(self, slot: int) -> int:
        return _HEADER.size + slot * self.slot_stride


def mapped(shm: shared_memory.SharedMemory) -> memoryview:
    """The block's bytes; a closed block has none."""
    if shm.buf is None:
        raise ValueError(f"shared memory {shm.name!r} is closed")
    return shm.buf


class _Ring:
    def __init__(self, shm: shared_memory.SharedMemory, layout: _Layout) -> None:
        self.shm = shm
        self.layout = layout
        buf = mapped(shm)
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

    def _release_views(self) -> None:
        for view in self._headers:
            view.release()
        self._headers = []
        self._pixels = []


class FrameRingWriter(_Ring):
    """Owned by capture: writes frames round-robin into the ring."""

    def __init__(self, name: str, width: int, height: int, slots: int = 8) -> None:
        if slots < 2:
            raise ValueError("a frame ring needs at least 2 slots")
        size = ring_bytes(width, height, slots)
        shm = _create_or_replace(name, size)
        _CREATED_HERE.add(name)
        _HEADER.pack_into(mapped(shm), 0, _MAGIC, slots, height, width, 3)
        super().__init__(shm, _Layout(slots, height, width))
        for header in self._headers:
            _SLOT_HEADER.pack_into(header, 0, _BUSY, 0.0)
        self.name = name
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
        self._release_views()
        self.shm.close()
        if unlink:
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass
            _CREATED_HERE.discard(self.name)


class FrameRingReader(_Ring):
    """Used by consumers: copies a referenced frame out, or reports it gone."""

    def __init__(self, name: str) -> None:
        shm = shared_memory.SharedMemory(name=name, create=False)
        # Python < 3.13 registers attached blocks with the resource tracker, which would
        # unlink capture's ring when this reader exits. Readers never own the block.
        if name not in _CREATED_HERE:
            resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
        magic, slots, height, width, channels = _HEADER.unpack_from(mapped(shm), 0)
        if magic != _MAGIC or channels != 3:
            shm.close()
            raise ValueError(f"shared memory {name!r} is not a hybridcam frame ring")
        super().__init__(shm, _Layout(slots, height, width))
        self.name = name

    def read(self, slot: int, seq: int, out: np.ndarray | None = None) -> np.ndarray:
        """Copy frame ``seq`` from ``slot`` (into ``out`` when given); raise FrameGone if lapped."""
        if not 0 <= slot < self.layout.slots:
            raise FrameGone(f"slot {slot} outside ring of {self.layout.slots}")
        header = self._headers[slot]
        if _SLOT_HEADER.unpack_from(header, 0)[0] != seq:
            raise FrameGone(f"slot {slot} no longer holds frame {seq}")
        if out is None:
            out = np.empty_like(self._pixels[slot])
        np.copyto(out, self._pixels[slot])
        if _SLOT_HEADER.unpack_from(header, 0)[0] != seq:
            raise FrameGone(f"slot {slot} was overwritten while frame {seq} was read")
        return out

    def view(self, slot: int, seq: int) -> np.ndarray:
        """Zero-copy, read-only view of frame ``seq``; check :meth:`holds` after using it."""
        if not 0 <= slot < self.layout.slots or not self.holds(slot, seq):
            raise FrameGone(f"slot {slot} no longer holds frame {seq}")
        view = self._pixels[slot].view()
        view.flags.writeable = False
        return view

    def holds(self, slot: int, seq: int) -> bool:
        return bool(_SLOT_HEADER.unpack_from(self._headers[slot], 0)[0] == seq)

    def slot_seq(self, slot: int) -> int:
        """Sequence number of the frame the slot holds now."""
        return int(_SLOT_HEADER.unpack_from(self._headers[slot], 0)[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.layout.height, self.layout.width, 3)

    def close(self) -> None:
        self._release_views()
        self.shm.close()


def _create_or_replace(name: str, size: int) -> shared_memory.SharedMemory:
    try:
        return shared_memory.SharedMemory(name=name, create=True, size=size)
    except FileExistsError:
        # Left behind by a capture process that was killed: take it over.
        stale = shared_memory.SharedMemory(name=name, create=False)
        stale.close()
        stale.unlink()
        return shared_memory.SharedMemory(name=name, create=True, size=size)


class FrameFetcher:
    """Turns a FrameRef into pixels: from the shared-memory ring on this host, else from its JPEG.

    Rings are attached once and kept. A capture process that restarts makes a new block
    under the same name, so a miss re-attaches once before it is counted as a drop.
    """

    def __init__(self) -> None:
        self._readers: dict[str, FrameRingReader] = {}

    def fetch(self, ref: FrameRefLike, out: np.ndarray | None = None) -> np.ndarray:
        if ref.shm_name is not None and ref.slot is not None:
            try:
                return self._read_shared(ref.shm_name, ref.slot, ref.seq, out)
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
        if ref.shm_name is not None and ref.slot is not None:
            try:
                reader = self._reader(ref.shm_name)
                try:
                    return BorrowedFrame(reader.view(ref.slot, ref.seq), reader, ref.slot, ref.seq)
                except FrameGone:
                    reader = self._reattach(ref.shm_name)
                    return BorrowedFrame(reader.view(ref.slot, ref.seq), reader, ref.slot, ref.seq)
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

    def _reader(self, name: str) -> FrameRingReader:
        reader = self._readers.get(name)
        if reader is None:
            reader = self._readers[name] = FrameRingReader(name)
        return reader

    def _reattach(self, name: str) -> FrameRingReader:
        old = self._readers.pop(name, None)
        if old is not None:
            old.close()
        reader = self._readers[name] = FrameRingReader(name)
        return reader

    def _read_shared(self, name: str, slot: int, seq: int, out: np.ndarray | None) -> np.ndarray:
        reader = self._readers.get(name)
        if reader is None:
            reader = self._readers[name] = FrameRingReader(name)
        try:
            return reader.read(slot, seq, out)
        except FrameGone:
            reader.close()
            del self._readers[name]
            self._readers[name] = fresh = FrameRingReader(name)
            return fresh.read(slot, seq, out)

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

    def still_valid(self) -> bool:
        return self.reader is None or self.reader.holds(self.slot, self.seq)


class FrameRefLike(Protocol):  # structural type of shared.schemas.FrameRef, kept import-free
    @property
    def shm_name(self) -> str | None: ...
    @property
    def slot(self) -> int | None: ...
    @property
    def seq(self) -> int: ...
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
