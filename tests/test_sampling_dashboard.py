"""Frames sent, frames saved and the reason mix, from the sampler's health report to both dashboards."""

from __future__ import annotations

from rich.console import Console

from devstack.terminal_dashboard import TerminalDashboard
from services.dashboard.site_state import SiteState
from shared.sampling_summary import summarize
from shared.schemas import Health
from shared.site_config import parse_site

SITE = parse_site({"site": "s", "defaults": {"width": 640, "height": 360, "fps": 10},
                   "cameras": [{"id": "wide", "role": "master", "source": "synthetic"}]})
COUNTERS = {"frames_seen": 500.0, "frames_sampled": 12.0, "sent_changed": 7.0, "sent_appeared": 3.0,
            "sent_heartbeat": 2.0, "skipped_unchanged": 420.0, "skipped_rate": 66.0, "skipped_unreadable": 2.0,
            "uptime_s": 60.0, "records_sent": 12.0, "bytes_sent": 1e6, "master_cameras": 1.0}


def test_the_summary_counts_saved_frames_apart_from_unreadable_ones() -> None:
    summary = summarize(COUNTERS)
    assert summary is not None
    assert (summary.policy, summary.sent, summary.saved) == ("adaptive", 12, 486)
    assert list(summary.sent_reasons) == ["changed", "appeared", "heartbeat"]  # largest first
    assert summary.saved_share == 486 / 498
    assert summary.objects_sent == 0 and summary.frames_per_object is None
    assert summarize(COUNTERS | {"objects_sent": 6.0}).frames_per_object == 2.0  # type: ignore[union-attr]
    assert summarize({"frames_sampled": 3.0}) is None
    assert summarize({"sent_every_nth": 3.0, "skipped_not_nth": 27.0}).policy == "every_nth"  # type: ignore[union-attr]


def test_the_web_dashboards_uplink_carries_the_sampling_mix() -> None:
    state = SiteState(SITE.site, SITE.resolved())
    [uplink, _] = state.apply(Health(service="sampler", instance="s1", state="ok", counters=COUNTERS))
    sampling = uplink["data"]["sampling"]
    assert sampling["sent"] == 12 and sampling["saved"] == 486 and sampling["sent_reasons"]["appeared"] == 3
    assert state.snapshot()["uplink"]["sampling"]["skipped_reasons"]["rate"] == 66


def test_the_terminal_table_prints_frames_sent_saved_and_the_reasons(redis_server) -> None:  # type: ignore[no-untyped-def]
    from shared.stream_bus import HEALTH_STREAM, StreamBus

    bus = StreamBus(redis_server.url)
    try:
        bus.publish(HEALTH_STREAM, Health(service="sampler", instance="s1", state="ok", counters=COUNTERS))
        dashboard = TerminalDashboard(bus, {"wide": "master"})
        dashboard.refresh()
        console = Console(width=200, record=True)
        console.print(dashboard.render("site"))
        text = console.export_text()
        assert "cloud sampling (adaptive): 12 sent, 486 saved (97.6%)" in text
        assert "changed 7, appeared 3, heartbeat 2" in text
        rows = dict(dashboard.summary_rows())
        assert rows["master frames saved (not sent)"] == "486 (97.6%)"
        assert rows["objects sent to the cloud (edge tracks)"] == "0" and rows["frames sent per object"] == "-"
        bus.publish(HEALTH_STREAM, Health(service="sampler", instance="s1", state="ok",
                                          counters=COUNTERS | {"sent_new_object": 4.0, "objects_sent": 8.0}))
        dashboard.refresh()
        rows = dict(dashboard.summary_rows())
        assert rows["objects sent to the cloud (edge tracks)"] == "8" and rows["frames sent per object"] == "2.00"
        console = Console(width=200, record=True)
        console.print(dashboard.render("site"))
        assert "8 objects sent, 2.00 frames per object" in console.export_text()
    finally:
        bus.close()
