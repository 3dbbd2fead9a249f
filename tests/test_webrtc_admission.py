"""WebRTC viewer admission and release (security review, finding 2), against real aiortc peers.

The dashboard's LiveViews answers offers made by a real aiortc peer on loopback, as a browser would.
A malformed offer (aiortc's SDP parser raises AssertionError on it) must release its viewer; an offer
whose ICE never completes must be released after the connect time-out; one client is capped; a relay
that dies while viewers remain is started again; and after all that a real viewer still connects.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from fastapi import HTTPException

from devstack.servers import free_port
from services.dashboard.settings import DashboardSettings
from services.dashboard.webrtc import LiveViews, Offer

MALFORMED_SDP = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video x UDP 1\r\n"


def _views(**overrides: object) -> LiveViews:
    settings = DashboardSettings(_env_file=None, dashboard_program_h264_url=f"http://127.0.0.1:{free_port()}/stream",
                                 **overrides)  # type: ignore[arg-type]
    return LiveViews(settings, ["cam1"])


async def _browser_offer() -> tuple[RTCPeerConnection, Offer]:
    peer = RTCPeerConnection()
    peer.addTransceiver("video", direction="recvonly")
    await peer.setLocalDescription(await peer.createOffer())
    return peer, Offer(sdp=peer.localDescription.sdp, type="offer", source="program")


async def _connects(views: LiveViews, client: str, timeout_s: float = 20.0) -> bool:
    peer, offer = await _browser_offer()
    try:
        answer = await views.answer(offer, client)
        await peer.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if peer.connectionState == "connected" and views.viewers[answer["id"]].connected:
                return True
            await asyncio.sleep(0.1)
        return False
    finally:
        await peer.close()


def test_a_malformed_offer_releases_its_viewer_and_source() -> None:
    async def scenario() -> None:
        views = _views()
        for _ in range(20):
            with pytest.raises(HTTPException) as refused:
                await views.answer(Offer(sdp=MALFORMED_SDP, type="offer", source="program"), "10.0.0.9")
            assert refused.value.status_code == 400
        assert views.viewers == {}
        assert not views.sources["program"].subscribers and not views.sources["program"].running
        assert views.counters["bad_offers"] == 20
        await views.close()

    asyncio.run(scenario())


def test_viewers_that_never_connect_are_released_and_do_not_lock_others_out() -> None:
    async def scenario() -> None:
        views = _views(dashboard_webrtc_max_viewers=4, dashboard_webrtc_connect_timeout_s=1.0,
                       dashboard_webrtc_max_viewers_per_client=4)
        peers = []
        for n in range(4):  # half-open: the answer is never applied, so ICE never completes
            peer, offer = await _browser_offer()
            peers.append(peer)
            await views.answer(offer, f"10.0.0.{n}")
        with pytest.raises(HTTPException) as full:
            await views.answer((await _browser_offer())[1], "10.0.0.99")
        assert full.value.status_code == 503
        await asyncio.sleep(2.5)  # the sweeper runs every second
        assert views.viewers == {}, "unconnected viewers were kept past the connect time-out"
        assert views.counters["unconnected_released"] == 4
        assert await _connects(views, "127.0.0.1"), "a real viewer could not connect after the half-open ones"
        for peer in peers:
            await peer.close()
        await views.close()

    asyncio.run(scenario())


def test_one_client_is_capped_but_others_still_get_in() -> None:
    async def scenario() -> None:
        views = _views(dashboard_webrtc_max_viewers_per_client=2)
        peers = []
        for _ in range(2):
            peer, offer = await _browser_offer()
            peers.append(peer)
            await views.answer(offer, "192.0.2.7")
        peer, offer = await _browser_offer()
        peers.append(peer)
        with pytest.raises(HTTPException) as capped:
            await views.answer(offer, "192.0.2.7")
        assert capped.value.status_code == 429
        assert len(views.viewers) == 2
        await views.answer(offer, "192.0.2.8")
        assert len(views.viewers) == 3
        for peer in peers:
            await peer.close()
        await views.close()

    asyncio.run(scenario())


def test_a_relay_that_dies_under_its_viewers_is_started_again() -> None:
    async def scenario() -> None:
        views = _views()
        peer, offer = await _browser_offer()
        await views.answer(offer, "127.0.0.1")
        relay = views.sources["program"]
        assert relay.running
        relay._task.cancel()  # type: ignore[attr-defined]  # the relay task dies (as on an unexpected error)
        await asyncio.sleep(0)
        assert not relay.running
        await views.sweep()
        assert relay.running and views.counters["sources_restarted"] == 1
        await peer.close()
        await views.close()
        assert not relay.running

    asyncio.run(scenario())
