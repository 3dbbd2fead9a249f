"""The auto-director: flicker-proof by construction, and it follows the synthetic walkthrough."""

from __future__ import annotations

import dataclasses
import random

import pytest

from services.capture.synthetic_scene import SyntheticScene
from services.compositor.director import Cut, Director, DirectorTiming, ShotStateMachine
from services.compositor.fusion import DetectionFusion
from services.compositor.replay import TimedDetections, replay
from shared.schemas import Detection, DetectionSet
from shared.site_config import ResolvedCamera

EPOCH = 1_700_000_000.0
TIMING = DirectorTiming(min_shot_s=3.0, confirm_s=0.7, cooldown_s=8.0, switch_margin=0.1, idle_after_s=3.0, detection_timeout_s=3.0)


def shot_lengths(cuts: list[Cut], end: float) -> list[tuple[Cut, float, Cut | None]]:
    """(cut that started the shot, duration, cut that ended it or None)."""
    ends = [c.time for c in cuts[1:]] + [end]
    following: list[Cut | None] = list(cuts[1:]) + [None]
    return [(cut, stop - cut.time, after) for cut, stop, after in zip(cuts, ends, following)]


# -- the state machine alone, with random scores --------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_no_score_driven_cut_before_min_shot_with_random_scores(seed: int) -> None:
    rng = random.Random(seed)
    timing = DirectorTiming(
        min_shot_s=rng.uniform(0.5, 6.0), confirm_s=rng.uniform(0.0, 2.0), cooldown_s=rng.uniform(0.0, 10.0),
        switch_margin=rng.uniform(0.0, 0.3),
    )
    machine = ShotStateMachine(timing, exempt_from_cooldown=frozenset({"a"}))
    cameras = ["a", "b", "c", "d"]
    cuts = [machine.start(0.0, "a", "start")]
    now, volatility = 0.0, rng.choice([0.05, 0.5, 1.0])
    scores = {c: rng.random() for c in cameras}
    for _ in range(3000):
        now += rng.choice([1 / 30, 1 / 15, 0.2, 0.5])
        scores = {c: min(1.0, max(0.0, s + rng.uniform(-volatility, volatility))) for c, s in scores.items()}
        cut = machine.propose(now, scores, "score")
        if cut is not None:
            cuts.append(cut)
    for cut, duration, ended_by in shot_lengths(cuts, now)[:-1]:
        assert duration >= timing.min_shot_s - 1e-9, f"shot on {cut.camera} lasted {duration:.2f} s"
        assert ended_by is not None and ended_by.camera != cut.camera
    assert len(cuts) <= 1 + now / timing.min_shot_s


def test_only_a_lost_camera_can_end_a_shot_early() -> None:
    rng = random.Random(3)
    machine = ShotStateMachine(TIMING)
    cuts = [machine.start(0.0, "a", "start")]
    now = 0.0
    for step in range(2000):
        now += 0.1
        if step % 97 == 0:
            cuts.append(machine.force_away(now, rng.choice(["a", "b", "c"]), "camera lost"))
        cut = machine.propose(now, {c: rng.random() for c in "abc"}, "score")
        if cut is not None:
            cuts.append(cut)
    for _cut, duration, ended_by in shot_lengths(cuts, now)[:-1]:
        if duration < TIMING.min_shot_s - 1e-9:
            assert ended_by is not None and ended_by.forced


def test_challenger_must_lead_for_the_confirmation_time_and_cannot_bounce_back() -> None:
    machine = ShotStateMachine(TIMING, exempt_from_cooldown=frozenset({"wide"}))
    machine.start(0.0, "wide", "start")
    assert machine.propose(5.0, {"wide": 0.5, "b": 0.9}, "b better") is None  # lead just started
    assert machine.propose(5.5, {"wide": 0.5, "b": 0.55}, "b barely") is None  # lead below margin: reset
    assert machine.propose(6.0, {"wide": 0.5, "b": 0.9}, "b better") is None
    cut = machine.propose(7.0, {"wide": 0.5, "b": 0.9}, "b better")
    assert cut is not None and cut.camera == "b"
    assert machine.propose(12.0, {"wide": 0.5, "b": 0.1, "c": 0.9}, "c") is None
    assert machine.propose(13.0, {"wide": 0.5, "b": 0.1, "c": 0.9}, "c").camera == "c"  # type: ignore[union-attr]
    for t in (18.0, 19.0, 20.0):  # b was left at 13 s: no return before 21 s
        assert machine.propose(t, {"wide": 0.0, "b": 1.0, "c": 0.2}, "b") is None
    assert machine.propose(21.5, {"wide": 0.0, "b": 1.0, "c": 0.2}, "b") is None  # confirmation starts
    assert machine.propose(22.5, {"wide": 0.0, "b": 1.0, "c": 0.2}, "b").camera == "b"  # type: ignore[union-attr]


def test_an_empty_shot_is_left_without_waiting_for_confirmation() -> None:
    machine = ShotStateMachine(TIMING)
    machine.start(0.0, "b", "start")
    assert machine.propose(2.0, {"wide": 0.55, "b": 0.0}, "empty") is None  # min shot still rules
    assert machine.propose(3.0, {"wide": 0.55, "b": 0.0}, "empty").camera == "wide"  # type: ignore[union-attr]


# -- the whole director on the synthetic walkthrough ---------------------------------------------


def site_cameras(scene: SyntheticScene) -> list[ResolvedCamera]:
    cameras = []
    for cam in scene.cameras.values():
        covers = None
        if cam.role == "slave":
            r = cam.region
            covers = {"master": "wide", "region": {"x0": r.x0, "y0": r.y0, "x1": r.x1, "y1": r.y1}}
        cameras.append(
            ResolvedCamera(id=cam.camera_id, name=cam.camera_id, source="synthetic", role=cam.role, width=cam.width,
                           height=cam.height, fps=15.0, cloud_sample_every=10, covers=covers)
        )
    return cameras


def detections_from_truth(scene: SyntheticScene, camera_id: str, t: float, source: str, seq: int) -> DetectionSet:
    camera = scene.cameras[camera_id]
    people = [
        Detection(label="person", class_id=0, score=0.8, box=p.box)
        for p in scene.ground_truth(camera_id, t)
        if p.visible_fraction >= 0.3
    ]
    return DetectionSet(
        camera_id=camera_id, seq=seq, frame_id=f"{camera_id}-{seq}", capture_ts=EPOCH + t, width=camera.width,
        height=camera.height, source=source, model="ground-truth", provider="test", latency_ms=0.0, detections=people,
    )


def walkthrough_detections(scene: SyntheticScene, duration_s: float, edge_fps: float = 5.0) -> list[TimedDetections]:
    """Edge sets for every camera at 5 fps (0.15 s late) and cloud sets for the master every second (1.5 s late)."""
    timed = []
    for camera_id in scene.cameras:
        for seq in range(int(duration_s * edge_fps)):
            t = seq / edge_fps
            timed.append(TimedDetections(EPOCH + t + 0.15, detections_from_truth(scene, camera_id, t, "edge", seq)))
    for seq in range(0, int(duration_s * edge_fps), int(edge_fps)):
        t = seq / edge_fps
        timed.append(TimedDetections(EPOCH + t + 1.5, detections_from_truth(scene, "wide", t, "cloud", seq)))
    return timed


def contains_everyone(scene: SyntheticScene, camera_id: str, t: float) -> bool:
    everyone = {p.person_id for p in scene.ground_truth("wide", t) if p.visible_fraction > 0.0}
    shown = {p.person_id for p in scene.ground_truth(camera_id, t) if p.visible_fraction >= 0.5}
    return bool(everyone) and everyone <= shown


def test_program_follows_the_walkthrough() -> None:
    scene = SyntheticScene.default_site(scenario="walkthrough", width=640, height=360)
    duration = scene.walkthrough_period
    cuts = replay(site_cameras(scene), TIMING, walkthrough_detections(scene, duration), EPOCH, EPOCH + duration, fps=10)
    shots = shot_lengths(cuts, EPOCH + duration)

    step, right, on_slave_in_pause, pause_time = 0.1, 0, 0, 0
    samples = int(duration / step)
    schedule = scene.walkthrough_schedule()
    for i in range(samples):
        t = i * step
        camera = next(cut.camera for cut in reversed(cuts) if cut.time <= EPOCH + t)
        nobody = not any(p.visible_fraction > 0 for p in scene.ground_truth("wide", t))
        right += (camera == "wide") if nobody else contains_everyone(scene, camera, t)
        if any(start <= t < end and region for start, end, region in schedule):
            pause_time += 1
            on_slave_in_pause += camera != "wide" and contains_everyone(scene, camera, t)
    assert right / samples >= 0.9, f"right camera only {right / samples:.0%} of the time: {[(c.time - EPOCH, c.camera) for c in cuts]}"
    assert on_slave_in_pause / pause_time >= 0.6, "the director should close in on the group while it pauses"
    assert all(duration >= TIMING.min_shot_s for _, duration, _ in shots[:-1])
    region_changes = sum(1 for start, end, region in schedule) + 1
    assert len(cuts) - 1 <= region_changes + 3
    empty_start, empty_end = next((start, end) for start, end, region in schedule if region is None)
    assert next(c for c in reversed(cuts) if c.time <= EPOCH + (empty_start + empty_end) / 2).camera == "wide"


def test_silent_detections_hold_the_wide_shot() -> None:
    scene = SyntheticScene.default_site(scenario="walkthrough", width=640, height=360)
    timing = dataclasses.replace(TIMING, detection_timeout_s=1.0)  # shorter than the tracks' memory
    timed = [d for d in walkthrough_detections(scene, 12.0) if d.arrival_ts < EPOCH + 5.0]
    cuts = replay(site_cameras(scene), timing, timed, EPOCH, EPOCH + 12.0, fps=10)
    assert cuts[-2].camera == "north-west", "the group was in north-west's region when detections stopped"
    assert cuts[-1].camera == "wide" and "detections stopped" in cuts[-1].reason
    assert cuts[-1].time >= EPOCH + 5.0 + timing.detection_timeout_s


def test_lost_camera_is_cut_away_from_at_once() -> None:
    scene = SyntheticScene.default_site(scenario="walkthrough", width=640, height=360)
    cameras = site_cameras(scene)
    everyone = {c.id for c in cameras}
    cuts = replay(
        cameras, TIMING, walkthrough_detections(scene, 7.0), EPOCH, EPOCH + 7.0, fps=10,
        available=lambda now: everyone - {"north-west"} if now >= EPOCH + 5.5 else everyone,
    )
    on_slave = [c for c in cuts if c.camera == "north-west"]
    assert on_slave, "the group starts in north-west's region, so the director goes there"
    lost = next(c for c in cuts if c.time >= EPOCH + 5.5)
    assert lost.forced and lost.camera == "wide" and "north-west lost" in lost.reason
    assert lost.time == pytest.approx(EPOCH + 5.5, abs=0.11)


def test_late_cloud_result_never_moves_the_cut_backwards() -> None:
    cameras = site_cameras(SyntheticScene.default_site(num_cameras=2, width=640, height=360))
    director = Director(cameras, TIMING)
    fusion = DetectionFusion()
    director.decide(EPOCH, fusion, {"wide", "north-west"})
    person = Detection(label="person", score=0.9, box=(100, 100, 140, 200))
    late = DetectionSet(camera_id="north-west", seq=1, frame_id="nw-1", capture_ts=EPOCH + 1.0, width=640, height=360,
                        source="cloud", model="m", provider="p", latency_ms=0.0, detections=[person])
    fresh = DetectionSet(camera_id="wide", seq=40, frame_id="w-40", capture_ts=EPOCH + 9.9, width=640, height=360,
                         source="edge", model="m", provider="p", latency_ms=0.0)
    fusion.add(fresh, EPOCH + 10.0)
    assert fusion.add(late, EPOCH + 10.0) in ("new", "late")
    cuts = [director.decide(EPOCH + 10.0 + i / 10, fusion, {"wide", "north-west"}) for i in range(30)]
    assert all(c is None or c.time >= EPOCH + 10.0 for c in cuts)
    assert all(c is None for c in cuts), "a person seen 9 s ago by the cloud is not news"


def test_cloud_set_for_the_same_frame_merges_without_duplicates() -> None:
    fusion = DetectionFusion()
    base = dict(camera_id="wide", seq=5, frame_id="wide-5", capture_ts=EPOCH, width=640, height=360, model="m", provider="p", latency_ms=0.0)
    edge = DetectionSet(source="edge", detections=[Detection(label="person", score=0.5, box=(10, 10, 50, 100))], **base)
    cloud = DetectionSet(source="cloud", detections=[
        Detection(label="person", score=0.9, box=(12, 11, 51, 101)), Detection(label="person", score=0.8, box=(300, 50, 340, 150)),
    ], **base)
    assert fusion.add(edge, EPOCH + 0.1) == "new"
    assert fusion.add(cloud, EPOCH + 1.5) == "merged"
    observation = fusion.detections_for_frame("wide", EPOCH)
    assert observation is not None and observation.sources == {"edge", "cloud"}
    assert sorted(d.score for d in observation.detections) == [0.8, 0.9]
    assert fusion.activity("wide", EPOCH + 0.5).count == 2
