"""A server with its own frame Redis (HYBRIDCAM_FRAMES_REDIS_URL): frames stay on it, metadata goes to the site's.

Real capture and edge-infer processes and two real redis-servers: the site Redis must get the
detections, the health and every frame reference with an inline JPEG (what the compositor and the
dashboard on other servers decode), and never edge-infer's work queue; the server's own Redis gets
the ring references without pixels and the consumer group that edge-infer works from.
"""

from __future__ import annotations

from pathlib import Path

from devstack.servers import LocalRedis
from shared.frame_ring import FrameFetcher
from shared.schemas import FrameRef, Health
from shared.stream_bus import HEALTH_STREAM, StreamBus, frames_stream
from tests.fixtures.pipeline import detection_sets, wait_until


def test_frames_stay_on_the_servers_redis_and_metadata_reaches_the_sites(services, redis_server, tmp_path: Path) -> None:
    frames_redis = LocalRedis(data_dir=tmp_path / "frames-redis")
    frames_redis.data_dir.mkdir()
    frames_redis.start()
    try:
        services.env["HYBRIDCAM_FRAMES_REDIS_URL"] = frames_redis.url
        services.env["HYBRIDCAM_CAPTURE_INLINE_JPEG"] = "true"
        services.start("capture", "--camera", "wide")
        services.start("edge-infer", "--camera", "wide")
        site, server = StreamBus(redis_server.url), StreamBus(frames_redis.url)
        assert wait_until(lambda: sum(not s.tracked for s in detection_sets(site)) >= 10, 90), services.logs()

        stream = frames_stream("wide")
        local = [e.message for e in server.read_all(stream) if isinstance(e.message, FrameRef)]
        mirrored = [e.message for e in site.read_all(stream) if isinstance(e.message, FrameRef)]
        assert local and mirrored
        assert all(ref.jpeg is None and ref.shm_name for ref in local), "the server's references carry no pixels"
        assert all(ref.jpeg for ref in mirrored), "the site's references carry the frame as a JPEG"
        pixels = FrameFetcher().fetch(mirrored[-1].model_copy(update={"shm_name": "not-on-this-host"}))
        assert pixels.shape == (mirrored[-1].height, mirrored[-1].width, 3)

        assert [g["name"] for g in server.redis.xinfo_groups(stream)] == [b"edge_infer"]
        assert site.redis.xinfo_groups(stream) == [], "edge-infer's work queue stays on the server"
        assert not server.redis.exists("detections"), "detections go to the site Redis only"
        pending = server.redis.xpending(stream, "edge_infer")["pending"]
        assert pending <= 2, f"{pending} frames read and never acknowledged on the server's Redis"

        services_heard = {e.message.service for e in site.read_all(HEALTH_STREAM) if isinstance(e.message, Health)}
        assert {"capture", "edge_infer"} <= services_heard
        frame_seqs = {ref.seq for ref in local}
        assert {s.seq for s in detection_sets(site)} <= frame_seqs | {max(frame_seqs) + 1}
    finally:
        services.stop_all()
        frames_redis.stop()
