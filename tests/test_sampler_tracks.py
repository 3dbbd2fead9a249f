"""The track-driven rules of the adaptive policy: each edge track reaches the cloud once, the best frame
of the rate window goes (greedy cover), and without track ids the count-based rules apply."""

from __future__ import annotations

import cv2
import numpy as np

from services.sampler.policy import AdaptivePolicy, AdaptiveSettings, EdgeSummary, EdgeTrack, FrameFacts, Verdict, edge_tracks, visibility

WATCH = frozenset({"person"})
BAND = (0.35, 0.5)
MIDDLE = (0.4, 0.3, 0.5, 0.7)  # a person in the middle of the frame, large enough


def room(people: int = 0) -> np.ndarray:
    frame = np.full((360, 640, 3), 90, np.uint8)
    for index in range(people):
        cv2.rectangle(frame, (60 + 120 * index, 120), (100 + 120 * index, 300), (10, 10, 10), -1)
    return frame


def tracked(*people: tuple[int, float, tuple[float, float, float, float]]) -> EdgeSummary:
    """An edge result whose person boxes carry track ids: (track id, score, normalised box) each."""
    detections = [("person", score, box, track_id) for track_id, score, box in people]
    tracks = edge_tracks(detections, WATCH, BAND, 0.04)
    return EdgeSummary.of(((label, score) for label, score, _, _ in detections), WATCH, BAND, tracks)


class Replay:
    def __init__(self, policy: AdaptivePolicy, fps: float = 10.0) -> None:
        self.policy, self.fps, self.seq = policy, fps, 0
        self.verdicts: list[Verdict] = []

    def offer(self, frame: np.ndarray, summary: EdgeSummary | None) -> list[Verdict]:
        verdicts = self.policy.offer(FrameFacts(self.seq, "cam", self.seq, self.seq / self.fps, summary), frame)
        self.seq += 1
        self.verdicts += verdicts
        return verdicts

    def sent(self) -> list[tuple[int, str]]:
        return [(int(v.token), v.reason) for v in self.verdicts if v.verb == "send"]  # type: ignore[call-overload]


def policy(**kwargs: object) -> AdaptivePolicy:
    return AdaptivePolicy(AdaptiveSettings(watch_labels=WATCH, unsure_band=BAND, **kwargs))  # type: ignore[arg-type]


def test_each_new_track_goes_once_when_well_visible_and_a_covered_one_never_again() -> None:
    replay = Replay(policy())
    for _ in range(20):
        replay.offer(room(0), tracked())
    first = len(replay.sent())
    for _ in range(100):  # one person for 10 s, moving a little: no further send for her
        replay.offer(room(1), tracked((7, 0.9, MIDDLE)))
    assert replay.sent()[first:] == [(21, "new_object")]  # confirmed on her second frame
    for _ in range(30):  # a second person joins: one more send, for him only
        replay.offer(room(2), tracked((7, 0.9, MIDDLE), (8, 0.8, (0.7, 0.3, 0.8, 0.7))))
    assert replay.sent()[first + 1:] == [(121, "new_object")]
    assert replay.policy.objects_sent == 2  # type: ignore[attr-defined]
    assert policy().tracking_cameras() == [] and replay.policy.tracking_cameras() == ["cam"]  # type: ignore[attr-defined]


def test_a_track_cut_by_the_border_waits_to_be_well_visible_but_not_longer_than_the_patience() -> None:
    assert visibility(0.9, MIDDLE, 0.5, 0.04) == 1.0
    assert visibility(0.9, (0.0, 0.3, 0.1, 0.7), 0.5, 0.04) == 0.5  # cut by the left border
    replay = Replay(policy(track_patience_s=0.5))
    for _ in range(20):
        replay.offer(room(0), tracked())
    for _ in range(10):
        replay.offer(room(1), tracked((3, 0.9, (0.0, 0.3, 0.1, 0.7))))
    assert replay.sent()[1:] == [(25, "new_object")]  # 0.5 s after it first showed at the border


def test_within_the_rate_window_the_frame_covering_most_uncovered_tracks_goes() -> None:
    replay = Replay(policy(max_fps=1.0))
    replay.offer(room(0), tracked((1, 0.9, MIDDLE)))
    replay.offer(room(0), tracked((1, 0.9, MIDDLE)))  # sent: covers track 1 (frame 1)
    replay.offer(room(1), tracked((1, 0.9, MIDDLE), (2, 0.9, (0.1, 0.3, 0.2, 0.7))))
    replay.offer(room(1), tracked((1, 0.9, MIDDLE), (2, 0.9, (0.1, 0.3, 0.2, 0.7))))  # held: covers 2
    replay.offer(room(2), tracked((2, 0.9, (0.1, 0.3, 0.2, 0.7)), (3, 0.9, (0.7, 0.3, 0.8, 0.7))))
    replay.offer(room(2), tracked((2, 0.9, (0.1, 0.3, 0.2, 0.7)), (3, 0.9, (0.7, 0.3, 0.8, 0.7))))  # covers 2 and 3: replaces
    for _ in range(6):  # tracks 2 and 3 go, the window opens at frame 10 with nothing new in view
        replay.offer(room(0), tracked())
    # frame 0 went first (heartbeat: nothing sent yet); frame 3 shows track 2, frame 4 tracks 2 and 3 (3 not
    # yet confirmed, but uncovered: the larger cover), frame 5 no more than 4: frame 4 goes when the window opens
    assert replay.sent() == [(0, "heartbeat"), (4, "new_object")]
    decided = {int(v.token): (v.verb, v.reason) for v in replay.verdicts if v.verb != "hold"}  # type: ignore[call-overload]
    assert decided[3] == ("skip", "rate") and decided[5] == ("skip", "rate")
    assert [v.ts for v in replay.verdicts if v.verb == "send"] == [0.0, 0.4]


def test_a_covered_track_is_not_sent_again_for_being_unsure() -> None:
    replay = Replay(policy())
    for _ in range(3):
        replay.offer(room(1), tracked((5, 0.9, MIDDLE)))
    for step in range(50):  # the edge now doubts her, the scene moves: no unsure send for a covered track
        replay.offer(room(1 + step % 2), tracked((5, 0.4, MIDDLE)))
    assert [reason for _, reason in replay.sent()] == ["heartbeat"]  # the first frame, which covered her
    for _ in range(10):  # an uncovered unsure track is worth a look once the patience is over
        replay.offer(room(1), tracked((5, 0.4, MIDDLE), (6, 0.42, (0.7, 0.3, 0.8, 0.7))))
    assert [reason for _, reason in replay.sent()] == ["heartbeat", "unsure"]


def test_without_track_ids_the_policy_counts_and_says_so() -> None:
    assert edge_tracks([("person", 0.9, MIDDLE, None)], WATCH, BAND, 0.04) is None
    replay = Replay(policy())
    for _ in range(16):
        replay.offer(room(0), EdgeSummary.of([], WATCH, BAND))
    for _ in range(5):
        replay.offer(room(0), EdgeSummary.of([("person", 0.9)], WATCH, BAND))
    assert ("appeared" in {reason for _, reason in replay.sent()})
    assert replay.policy.tracking_cameras() == []


def test_a_blind_edge_still_sends_on_change_but_a_tracked_scene_does_not() -> None:
    blind = Replay(policy(busy_backoff=1.0))
    seeing = Replay(policy(busy_backoff=1.0))
    for step in range(60):
        blind.offer(room(step // 20), tracked())
        seeing.offer(room(step // 20), tracked((1, 0.9, MIDDLE)))
    assert [reason for _, reason in blind.sent()].count("changed") == 3
    assert [reason for _, reason in seeing.sent()] == ["heartbeat"]  # the first frame; then only covered tracks


def test_track_memory_is_bounded() -> None:
    replay = Replay(policy(track_memory_s=5.0))
    for step in range(600):  # a new object every frame for a minute
        replay.offer(room(0), tracked((step, 0.9, MIDDLE)))
    state = replay.policy.cameras["cam"]
    assert len(state.tracks_seen) <= 2 * 5 * 10 + 1 and len(state.covered) <= len(state.tracks_seen)


def test_edge_tracks_keep_the_best_box_of_a_track_and_ignore_other_labels() -> None:
    tracks = edge_tracks([("person", 0.9, MIDDLE, 1), ("person", 0.45, MIDDLE, 1), ("dog", 0.9, MIDDLE, None),
                          ("person", 0.2, MIDDLE, None)], WATCH, BAND, 0.04)
    assert tracks == (EdgeTrack(1, 1.0, False, "person", MIDDLE),)


def test_a_track_the_cloud_did_not_confirm_goes_once_more_when_well_visible() -> None:
    """A frame covers two tracks; the cloud's boxes show only one of them (the other was too faint for it, or
    the edge carried a covered id onto someone new): that one goes again once well visible, and only once."""
    replay = Replay(policy())
    left, right = (0.1, 0.3, 0.2, 0.7), MIDDLE
    for _ in range(10):  # 1 s: track 1 sure, track 2 doubted by the edge (unsure score)
        replay.offer(room(2), tracked((1, 0.9, left), (2, 0.42, right)))
    assert replay.sent() == [(0, "heartbeat")]  # covers both
    replay.policy.learn("cam", 0.0, 1, [left])  # the cloud found only track 1
    for _ in range(10):
        replay.offer(room(2), tracked((1, 0.9, left), (2, 0.42, right)))
    assert replay.sent() == [(0, "heartbeat")]  # not again while still doubtful: the same picture
    for _ in range(40):  # track 2 now well visible: one more look, then never again
        replay.offer(room(2), tracked((1, 0.9, left), (2, 0.9, right)))
    assert replay.sent() == [(0, "heartbeat"), (20, "recheck")]
    replay.policy.learn("cam", 2.0, 1, [left])  # the cloud misses it again: no third frame
    for _ in range(40):
        replay.offer(room(2), tracked((1, 0.9, left), (2, 0.9, right)))
    assert replay.sent() == [(0, "heartbeat"), (20, "recheck")]
    assert replay.policy.objects_sent == 2  # type: ignore[attr-defined]


def test_a_cloud_answer_confirming_every_track_or_coming_after_a_later_cover_changes_nothing() -> None:
    replay = Replay(policy())
    left, right = (0.1, 0.3, 0.2, 0.7), MIDDLE
    for _ in range(5):
        replay.offer(room(2), tracked((1, 0.9, left), (2, 0.9, right)))
    replay.policy.learn("cam", 0.0, 2, [right, left])  # both confirmed
    for _ in range(15):
        replay.offer(room(2), tracked((1, 0.9, left), (2, 0.9, right), (3, 0.9, (0.7, 0.3, 0.8, 0.7))))
    assert replay.sent() == [(0, "heartbeat"), (10, "new_object")]  # track 3 once the rate allows; 1 and 2 stay covered
    replay.policy.learn("cam", 0.0, 0, [])  # a late, stale answer for frame 0: frame 10 showed them since
    for _ in range(15):
        replay.offer(room(2), tracked((1, 0.9, left), (2, 0.9, right), (3, 0.9, (0.7, 0.3, 0.8, 0.7))))
    assert replay.sent() == [(0, "heartbeat"), (10, "new_object")]


def test_with_the_cloud_count_only_the_worst_seen_doubtful_tracks_are_rechecked() -> None:
    replay = Replay(policy())
    sure, faint, fainter = (0.1, 0.3, 0.2, 0.7), MIDDLE, (0.7, 0.3, 0.8, 0.7)
    for _ in range(5):
        replay.offer(room(3), tracked((1, 0.9, sure), (2, 0.45, faint), (3, 0.4, fainter)))
    replay.policy.learn("cam", 0.0, 2)  # one of three missing, which one unknown: the worst seen (track 3)
    state = replay.policy.cameras["cam"]
    assert set(state.covered) == {1, 2} and set(state.doubted) == {3}
    for _ in range(15):
        replay.offer(room(3), tracked((1, 0.9, sure), (2, 0.9, faint), (3, 0.9, fainter)))
    assert replay.sent() == [(0, "heartbeat"), (10, "recheck")]  # once the rate window opens


def test_the_cloud_answer_carries_its_watch_label_boxes_normalised_to_the_frame() -> None:
    from services.sampler.edge_pairing import EdgePairing
    from shared.schemas import Detection, DetectionSet

    pairing = EdgePairing(["cam"], WATCH, BAND)
    answer = DetectionSet(camera_id="cam", seq=4, frame_id="4", capture_ts=12.5, width=640, height=360, model="cloud",
                          provider="test", latency_ms=0.0, source="cloud",
                          detections=[Detection(label="Person", score=0.9, box=(64, 36, 128, 180)),
                                      Detection(label="person", score=0.4, box=(0, 0, 10, 10)),
                                      Detection(label="dog", score=0.9, box=(0, 0, 10, 10))])
    pairing.add(answer)
    assert pairing.cloud_answers() == [("cam", 12.5, 1, [(0.1, 0.1, 0.2, 0.5)])]


def people(*rects: tuple[int, int]) -> np.ndarray:
    """A room with a person (a rectangle at x, of the given grey level) per entry."""
    frame = np.full((360, 640, 3), 90, np.uint8)
    for x, grey in rects:
        cv2.rectangle(frame, (x, 120), (x + 40, 300), (grey, grey, grey), -1)
    return frame


def test_a_blind_edge_does_not_resend_where_the_cloud_already_found_someone() -> None:
    """The edge sees no one (a seated person it misses); the cloud found her: her fidgeting is no change
    worth a frame, a second person elsewhere is."""
    for tracking in (False, True):
        replay = Replay(policy(busy_backoff=1.0))
        blind = tracked() if tracking else EdgeSummary.of([], WATCH, BAND)
        if tracking:  # the camera's edge tracks objects (it saw one earlier), none in view now
            replay.policy.cameras.clear()
            replay.offer(people(), tracked((1, 0.9, (0.9, 0.1, 0.95, 0.2))))
            replay.offer(people(), tracked((1, 0.9, (0.9, 0.1, 0.95, 0.2))))
            assert replay.policy.tracking_cameras() == ["cam"]
        while replay.seq < 10:
            replay.offer(people(), blind)
        first = len(replay.sent())
        replay.offer(people((60, 10)), blind)  # she arrives: changed
        assert replay.sent()[first:] == [(10, "changed")]
        replay.policy.learn("cam", 1.0, 1, [(60 / 640, 120 / 360, 100 / 640, 300 / 360)])
        for step in range(40):  # she fidgets for 4 s: every frame differs from the sent one where she sits
            replay.offer(people((60, 10 if step % 2 else 60)), blind)
        assert replay.sent()[first:] == [(10, "changed")]
        for _ in range(5):  # someone else, where the cloud found no one
            replay.offer(people((60, 10), (400, 10)), blind)
        assert replay.sent()[first:] == [(10, "changed"), (51, "changed")]


def test_a_track_starting_where_the_cloud_already_found_someone_is_adopted_not_sent() -> None:
    """The first frame went before the edge confirmed any track; the cloud found a person in it. The edge's
    track that starts there afterwards is that person (covered by the answer); one starting elsewhere is not."""
    replay = Replay(policy())
    there, elsewhere = MIDDLE, (0.7, 0.3, 0.8, 0.7)
    replay.offer(room(1), tracked())
    replay.policy.learn("cam", 0.0, 1, [there])
    for _ in range(30):
        replay.offer(room(1), tracked((5, 0.9, (0.41, 0.31, 0.51, 0.71))))
    assert [token for token, _ in replay.sent()] == [0]
    assert replay.policy.objects_adopted == 1 and replay.policy.objects_sent == 1  # type: ignore[attr-defined]
    for _ in range(10):  # the box is taken: a second new track there or elsewhere still goes
        replay.offer(room(2), tracked((5, 0.9, there), (6, 0.9, elsewhere)))
    assert replay.sent()[1:] == [(32, "new_object")]  # on its second frame


def test_a_frame_held_for_the_rate_window_is_dropped_when_the_answer_adopts_its_tracks() -> None:
    replay = Replay(policy(max_fps=1.0))
    replay.offer(room(1), tracked())  # frame 0 goes (nothing tracked yet)
    for _ in range(8):  # frames 1-8: a track appears and is held until the window opens at 1 s
        replay.offer(room(1), tracked((5, 0.9, MIDDLE)))
    replay.policy.learn("cam", 0.0, 1, [MIDDLE])  # the answer: the cloud found her in frame 0
    for _ in range(10):
        replay.offer(room(1), tracked((5, 0.9, MIDDLE)))
    assert [token for token, _ in replay.sent()] == [0]
    assert [v.reason for v in replay.verdicts if v.verb == "skip" and int(v.token) == 2] == ["unchanged"]  # type: ignore[call-overload]
