"""The sampling policies' decisions: every reason to send, every reason to skip, and the budget."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from services.sampler.policy import AdaptivePolicy, AdaptiveSettings, EdgeSummary, EveryNthFrame, FrameFacts, Verdict

WATCH = frozenset({"person"})
BAND = (0.35, 0.5)


def room(person_at: int | None = None) -> np.ndarray:
    frame = np.full((360, 640, 3), 90, np.uint8)
    cv2.rectangle(frame, (40, 200), (600, 340), (40, 80, 140), -1)
    if person_at is not None:
        cv2.rectangle(frame, (person_at, 120), (person_at + 40, 300), (20, 20, 200), -1)
    return frame


def edge(count: int = 0, score: float = 0.9) -> EdgeSummary:
    return EdgeSummary.of([("person", score)] * count, WATCH, BAND)


class Replay:
    """Offers frames at 10 fps to a policy and keeps every verdict."""

    def __init__(self, policy: AdaptivePolicy | EveryNthFrame) -> None:
        self.policy = policy
        self.seq = 0
        self.verdicts: list[Verdict] = []

    def offer(self, frame: np.ndarray | None, summary: EdgeSummary | None = None, camera: str = "cam") -> list[Verdict]:
        facts = FrameFacts(self.seq, camera, self.seq, self.seq / 10, summary)
        self.seq += 1
        verdicts = self.policy.offer(facts, frame)
        self.verdicts += verdicts
        return verdicts

    def reasons(self) -> list[tuple[int, str, str]]:
        return [(int(v.token), v.verb, v.reason) for v in self.verdicts]  # type: ignore[call-overload]


def test_every_nth_sends_by_sequence_number_and_counts_the_rest() -> None:
    replay = Replay(EveryNthFrame(per_camera={"cam": 3}))
    for _ in range(7):
        replay.offer(None)
    assert [token for token, verb, _ in replay.reasons() if verb == "send"] == [0, 3, 6]
    assert {reason for _, verb, reason in replay.reasons() if verb == "skip"} == {"not_nth"}


def test_a_still_scene_sends_its_first_frame_then_only_heartbeats() -> None:
    replay = Replay(AdaptivePolicy(AdaptiveSettings(watch_labels=WATCH, max_interval_s=5.0)))
    for _ in range(121):  # 12 s at 10 fps
        replay.offer(room(), edge(0))
    sent = [(token, reason) for token, verb, reason in replay.reasons() if verb == "send"]
    assert sent == [(0, "changed"), (50, "heartbeat"), (100, "heartbeat")]
    assert sum(1 for _, verb, reason in replay.reasons() if reason == "unchanged") == 118


def test_a_change_is_measured_against_the_last_sent_frame_not_the_previous_one() -> None:
    replay = Replay(AdaptivePolicy(AdaptiveSettings(watch_labels=WATCH, max_fps=10.0)))
    replay.offer(room(), None)
    # A person creeps in 2 px per frame: no frame differs much from its predecessor, but the drift adds up.
    verdicts = [replay.offer(room(300 + 2 * step), None)[0] for step in range(40)]
    sent = [v for v in verdicts if v.verb == "send"]
    assert sent and all(v.reason == "changed" for v in sent)
    assert len(sent) < 15


def test_appeared_and_left_follow_the_edge_count_and_unsure_follows_the_band() -> None:
    replay = Replay(AdaptivePolicy(AdaptiveSettings(watch_labels=WATCH, unsure_band=BAND, max_fps=1.0)))
    replay.offer(room(), edge(0))
    for _ in range(15):
        replay.offer(room(), edge(0))
    assert replay.offer(room(), edge(1))[0].reason == "unchanged"  # one frame could be detector flicker
    assert replay.offer(room(), edge(1))[0].reason == "appeared"  # the second in a row is an arrival
    for _ in range(25):
        replay.offer(room(), edge(1))
    replay.offer(room(), edge(0))
    replay.offer(room(), None)  # a frame without an edge result neither confirms nor breaks the streak
    assert replay.offer(room(), edge(0))[0].reason == "left"
    for _ in range(25):
        replay.offer(room(), edge(0))
    # Unsure about a picture the cloud has already seen (nothing changed since the last sent frame): not sent.
    assert replay.offer(room(), EdgeSummary.of([("person", 0.42)], WATCH, BAND))[0].reason == "unchanged"
    unsure = replay.offer(room(300), EdgeSummary.of([("person", 0.42)], WATCH, BAND))
    assert unsure[0].verb == "send" and unsure[0].reason == "unsure"
    # A non-watch label in the band changes nothing.
    for _ in range(25):
        replay.offer(room(300), edge(0))
    assert replay.offer(room(300), EdgeSummary.of([("dog", 0.42)], WATCH, BAND))[0].reason == "unchanged"


def test_max_fps_skips_candidates_as_rate() -> None:
    replay = Replay(AdaptivePolicy(AdaptiveSettings(watch_labels=WATCH, max_fps=1.0, busy_backoff=1.0)))
    for step in range(20):  # a person moving fast for 2 s
        replay.offer(room(100 + 20 * step), None)
    sent = [token for token, verb, _ in replay.reasons() if verb == "send"]
    assert sent == [0, 10]
    assert sum(1 for _, _, reason in replay.reasons() if reason == "rate") == 18


def walker(x: int) -> np.ndarray:
    frame = room()
    cv2.rectangle(frame, (x, 120), (x + 40, 300), (20, 20, 20), -1)
    return frame


def test_a_busy_scene_the_cloud_has_seen_backs_off_and_a_settled_one_sends_the_next_change_at_once() -> None:
    policy = AdaptivePolicy(AdaptiveSettings(watch_labels=WATCH, max_fps=1.0, busy_backoff=2.0, settle_s=2.0, max_interval_s=30.0))
    replay = Replay(policy)
    for step in range(160):  # 16 s of a person walking across: every frame soon differs from the last sent one
        for verdict in replay.offer(walker(100 + 2 * step), None):
            if verdict.verb == "send":
                policy.learn("cam", verdict.ts, 1)  # the cloud found her
    busy = [token for token, verb, _ in replay.reasons() if verb == "send"]
    # 1 s (max_fps) after the first send, then 2 s, 4 s, 8 s: not one a second
    assert busy == [0, 20, 60, 140]
    assert {reason for token, verb, reason in replay.reasons() if verb == "skip"} <= {"rate", "unchanged"}
    for _ in range(30):  # she stands still for 3 s: the spell is over
        replay.offer(walker(420), None)
    settled_at = replay.seq
    for step in range(10):  # and walks off: sent at once, as after any quiet spell
        replay.offer(walker(420 - 30 * (step + 1)), None)
    later = [token for token, verb, _ in replay.reasons() if verb == "send" and token >= settled_at]
    assert later[0] <= settled_at + 1


def test_a_change_the_cloud_found_nothing_in_is_checked_again_at_max_fps() -> None:
    policy = AdaptivePolicy(AdaptiveSettings(watch_labels=WATCH, max_fps=1.0, busy_backoff=2.0))
    replay = Replay(policy)
    for step in range(60):
        for verdict in replay.offer(walker(100 + 4 * step), None):
            if verdict.verb == "send":
                policy.learn("cam", verdict.ts, 0)  # a shadow, say: nothing the cloud watches for
    assert [token for token, verb, _ in replay.reasons() if verb == "send"] == [0, 10, 20, 30, 40, 50]


def test_the_edge_seeing_what_the_cloud_already_found_is_no_arrival_and_no_doubt() -> None:
    policy = AdaptivePolicy(AdaptiveSettings(watch_labels=WATCH, unsure_band=BAND, max_fps=1.0))
    replay = Replay(policy)
    first = replay.offer(room(), edge(0))[0]
    policy.learn("cam", first.ts, 2)  # the edge saw nobody; the cloud found two people
    for _ in range(20):
        replay.offer(room(), edge(1))  # the edge now sees one of them: nothing new
    # one sure and one unsure person in a changed picture: sent because it changed, not as a doubt
    changed = replay.offer(room(300), EdgeSummary.of([("person", 0.9), ("person", 0.42)], WATCH, BAND))[0]
    assert (changed.verb, changed.reason) == ("send", "changed")
    policy.learn("cam", changed.ts, 2)
    for _ in range(15):
        replay.offer(room(300), edge(2))
    replay.offer(room(300), edge(3))
    assert replay.offer(room(300), edge(3))[0].reason == "appeared"  # a third person: news


def test_edge_summary_counts_watch_labels_above_the_band_and_rates_unsureness() -> None:
    assert EdgeSummary.of([("person", 0.9), ("person", 0.2), ("car", 0.9)], WATCH, BAND) == EdgeSummary(1, 0.0)
    middle = EdgeSummary.of([("person", 0.425)], WATCH, BAND)
    near_top = EdgeSummary.of([("person", 0.49)], WATCH, BAND)
    assert middle.watch_count == 0 and middle.unsure == pytest.approx(1.0) and 0 < near_top.unsure < 0.2


def test_under_a_budget_the_most_informative_candidate_of_the_window_wins() -> None:
    # 360 images/h = one every 10 s, no saved-up burst beyond one image.
    settings = AdaptiveSettings(watch_labels=WATCH, max_fps=10.0, budget_images_per_hour=360.0, budget_burst=1.0,
                                busy_backoff=1.0)
    policy = AdaptivePolicy(settings)
    replay = Replay(policy)
    assert replay.offer(room(), edge(0))[-1].verb == "send"  # the bucket starts full
    small_move = replay.offer(room(300), edge(0))  # a change: no token, so it is held
    assert [(v.verb, v.reason) for v in small_move] == [("hold", "changed")]
    replay.offer(room(300), edge(1))  # the count differs for one frame: a change, as informative as the held one
    appeared = replay.offer(room(300), edge(1))  # confirmed arrival, more informative: takes the held slot
    assert [(int(v.token), v.verb, v.reason) for v in appeared] == [(1, "skip", "budget"), (3, "hold", "appeared")]
    weaker = replay.offer(room(320), edge(1))
    assert weaker[-1].verb == "skip" and weaker[-1].reason == "budget"
    released = policy.poll(10.0)  # a token again: the held winner goes
    assert [(int(v.token), v.verb, v.reason) for v in released] == [(3, "send", "appeared")]
    assert policy.poll(10.1) == []


def test_a_frame_still_held_at_shutdown_is_skipped_so_it_can_be_acknowledged() -> None:
    settings = AdaptiveSettings(watch_labels=WATCH, budget_images_per_hour=1.0, budget_burst=1.0)
    policy = AdaptivePolicy(settings)
    replay = Replay(policy)
    replay.offer(room(), edge(0))
    replay.seq = 40
    assert replay.offer(room(200), edge(0))[-1].verb == "hold"
    assert [(v.verb, v.reason) for v in policy.release()] == [("skip", "budget")]


def test_cameras_are_independent() -> None:
    replay = Replay(AdaptivePolicy(AdaptiveSettings(watch_labels=WATCH)))
    replay.offer(room(), None, camera="a")
    assert replay.offer(room(), None, camera="b")[0].reason == "changed"  # b's first frame
    replay.seq = 3
    assert replay.offer(room(), None, camera="a")[0].reason == "unchanged"


@pytest.mark.parametrize("kwargs", [{"unsure_band": (0.6, 0.4)}, {"max_fps": 0.0}, {"budget_images_per_hour": -1.0}])
def test_bad_adaptive_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        replace(AdaptiveSettings(), **kwargs)


def test_a_usd_budget_becomes_images_per_hour_at_the_price_sets_rekognition_price(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from services.sampler.service import build_policy
    from services.sampler.settings import SamplerSettings
    from shared.errors import ConfigError
    from shared.site_config import parse_site

    site = parse_site({"site": "s", "cameras": [{"id": "wide", "role": "master", "source": "synthetic"}]})
    policy = build_policy(SamplerSettings(sampler_budget_usd_per_hour=0.36, sampler_price_set="2019-eu-west-1"), site)
    assert isinstance(policy, AdaptivePolicy) and policy.settings.budget_images_per_hour == pytest.approx(360.0)
    assert isinstance(build_policy(SamplerSettings(sampler_policy="every_nth"), site), EveryNthFrame)
    with pytest.raises(ConfigError, match="not found"):
        build_policy(SamplerSettings(sampler_budget_usd_per_hour=1.0, sampler_price_set="no-such-set"), site)


def test_a_24_hour_busy_spell_in_accelerated_time_never_overflows_and_keeps_the_heartbeat() -> None:
    """A lobby that is never still for 24 h, every sent frame answered with people, plus a burst of
    redriven answers: the backoff's exponent stops where the wait reaches the heartbeat."""
    settings = AdaptiveSettings(watch_labels=WATCH, max_fps=0.75, busy_backoff=2.5, max_interval_s=30.0)
    policy = AdaptivePolicy(settings)
    frames = [cv2.resize(walker(100 + 37 * i), (160, 90)) for i in range(11)]  # differs from frame to frame, for ever
    sends: list[float] = []
    for second in range(24 * 3600):  # one frame a second of capture time, 24 hours
        facts = FrameFacts(second, "lobby", second, float(second), edge(3))
        for verdict in policy.offer(facts, frames[second % len(frames)]):
            if verdict.verb == "send":
                sends.append(verdict.ts)
                policy.learn("lobby", verdict.ts, 3)
        if second == 12 * 3600:
            for _ in range(5000):  # one burst of redriven results for the same frame
                policy.learn("lobby", float(second), 3)
    gaps = np.diff(sends)
    assert len(sends) >= 24 * 3600 / settings.max_interval_s * 0.95
    assert gaps.max() <= settings.max_interval_s + 1.0  # the heartbeat holds throughout
    assert np.median(gaps) >= settings.max_interval_s - 1.0  # and the backoff holds at its ceiling
    assert policy.camera("lobby").busy_sends <= 8
