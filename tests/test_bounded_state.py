"""What grows with time stays bounded: consumers of gone instances, the dashboard's service table,
the edit decision list."""

from __future__ import annotations

import time
from pathlib import Path

from services.compositor.director import Cut
from services.compositor.edit_decision_list import EditDecisionList, read_edl
from services.dashboard.site_state import SiteState
from shared.schemas import FrameRef, Health
from shared.stream_bus import StreamBus, frames_stream


def test_consumers_of_gone_instances_are_removed_from_the_group(redis_server) -> None:
    bus = StreamBus(redis_server.url)
    bus.consumer_idle_limit_ms = 300
    stream = frames_stream("cam")
    bus.ensure_group(stream, "g", "0")
    bus.publish(stream, FrameRef(camera_id="cam", seq=1, capture_ts=time.time(), width=4, height=4))
    bus.read_group([stream], "g", "instance-1", block_ms=10)  # instance 1 read it, then died before its ack
    time.sleep(0.5)
    claimed = bus.claim_stale(stream, "g", "instance-2", min_idle_ms=100)  # its successor takes the entry over
    assert [e.message.seq for e in claimed] == [1]
    bus.ack(stream, "g", [claimed[0].entry_id])
    names = {c["name"].decode() for c in bus.redis.xinfo_consumers(stream, "g")}
    assert names == {"instance-2"}


def test_a_live_consumer_with_pending_entries_is_kept(redis_server) -> None:
    bus = StreamBus(redis_server.url)
    bus.consumer_idle_limit_ms = 0
    stream = frames_stream("cam")
    bus.ensure_group(stream, "g", "0")
    bus.publish(stream, FrameRef(camera_id="cam", seq=1, capture_ts=time.time(), width=4, height=4))
    bus.read_group([stream], "g", "busy", block_ms=10)
    bus.claim_stale(stream, "g", "other", min_idle_ms=60_000)  # nothing idle enough to claim
    assert "busy" in {c["name"].decode() for c in bus.redis.xinfo_consumers(stream, "g")}


def test_dashboard_forgets_instances_that_stopped_reporting() -> None:
    state = SiteState("site", [])
    now = time.time()
    for restart in range(5):  # a service restarted five times, each with a new instance name
        state.apply(Health(service="edge_infer", instance=f"host-{restart}", state="ok", ts=now - 650 + restart * 130))
    state.apply(Health(service="edge_infer", instance="host-5", state="ok", ts=now))
    assert [s["instance"] for s in state.snapshot()["services"]] == ["host-5"]


def test_edit_decision_list_is_rotated_past_its_size_bound(tmp_path: Path) -> None:
    path = tmp_path / "edl.jsonl"
    edl = EditDecisionList(path, 0.0, max_bytes=2000)
    for i in range(200):
        edl.record(Cut(time=float(i), camera=f"cam{i % 3}", reason="score", forced=False, scores={}))
    edl.close(200.0)
    assert path.stat().st_size <= 2200
    assert path.with_name("edl.jsonl.1").stat().st_size <= 2200
    assert read_edl(path)[-1]["reason"] == "program ended"
