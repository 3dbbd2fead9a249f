"""How the live senders degrade under load: they drop whole groups of pictures before sending, never queue
them late, and WebRTC stamps each picture when it is sent (so a busy sender does not look like network
jitter to the browser's jitter buffer)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from services.dashboard import webrtc
from services.dashboard.live_socket import QUEUED_UNITS as SOCKET_QUEUE
from services.dashboard.live_socket import SocketViewer
from services.dashboard.live_video import UnitSource
from services.dashboard.webrtc import QUEUED_UNITS, EncodedVideoTrack
from shared.h264_stream import CLOCK, AccessUnit


class Units(UnitSource):
    """A source the test feeds by hand."""

    def _start(self) -> None:
        return

    def _stop(self) -> None:
        return


def unit(index: int, key: bool = False) -> AccessUnit:
    return AccessUnit(bytes([index]), index, key)


def test_webrtc_drops_a_stale_group_when_a_newer_key_frame_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        source = Units()
        track = EncodedVideoTrack(source)
        now = [100.0]
        monkeypatch.setattr(webrtc.time, "monotonic", lambda: now[0])
        for i in range(4):  # a group that then waits: the sender was busy
            source._publish(unit(i, key=i == 0))
        now[0] += 0.5
        for i in range(4, 7):
            source._publish(unit(i, key=i == 4))
        sent = [bytes(await track.recv())[0] for _ in range(3)]
        assert sent == [4, 5, 6], "the late group went out before the newer key frame"
        assert track.dropped == 4
        track.stop()

    asyncio.run(scenario())


def test_webrtc_sends_a_fresh_group_in_order_and_stamps_it_when_sent() -> None:
    async def scenario() -> None:
        source = Units()
        track = EncodedVideoTrack(source)
        for i in range(3):
            source._publish(unit(i, key=i == 0))
        before = int(time.monotonic() / CLOCK)
        packets = [await track.recv() for _ in range(3)]
        assert [bytes(p)[0] for p in packets] == [0, 1, 2] and track.dropped == 0
        stamps = [p.pts for p in packets]
        assert stamps == sorted(set(stamps)) and stamps[0] >= before  # send time, not the source's pts (0, 1, 2)
        track.stop()

    asyncio.run(scenario())


def test_webrtc_viewer_far_behind_skips_to_the_next_key_frame() -> None:
    async def scenario() -> None:
        source = Units()
        track = EncodedVideoTrack(source)
        source._publish(unit(0, key=True))
        for i in range(1, QUEUED_UNITS + 3):  # nobody takes them: the queue overflows
            source._publish(unit(i))
        assert not track.queue and track.waiting_for_keyframe
        source._publish(unit(50, key=True))
        assert bytes(await track.recv())[0] == 50
        track.stop()

    asyncio.run(scenario())


def test_socket_viewer_behind_skips_to_the_next_key_frame_and_counts_it() -> None:
    async def scenario() -> None:
        counters: Counter[str] = Counter()
        viewer = SocketViewer(counters)
        viewer.offer(unit(99))  # no key frame yet: nothing to decode from
        for i in range(SOCKET_QUEUE):
            viewer.offer(unit(i, key=i == 0))
        viewer.offer(unit(100))  # full: the queue goes, and so does this unit (no key frame)
        viewer.offer(unit(101))
        viewer.offer(unit(102, key=True))
        assert [viewer.queue.get_nowait().data[0] for _ in range(viewer.queue.qsize())] == [102]
        assert counters["dropped"] == 1 + SOCKET_QUEUE + 2

    asyncio.run(scenario())
