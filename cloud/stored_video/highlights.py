"""The highlights reel: the N most interesting stretches of a video, cut together with short cross-fades.

Interest is a per-second series: `people` (most people seen at once), `watch` (summed confidence of watch
labels) or `motion` (mean frame difference, measured here on the decoded video). A window of the segment
length slides over it; the best windows that do not overlap win and play in their original order. The reel's
edit decision list (JSON lines) says where every piece came from.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

METRICS = ("people", "watch", "motion")


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    score: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def choose_segments(series: np.ndarray, count: int, segment_s: float, duration_s: float) -> list[Segment]:
    """The `count` best non-overlapping windows of `segment_s` seconds, in time order; windows scoring 0 never win."""
    window = max(1, min(len(series), int(round(segment_s))))
    if len(series) == 0 or count < 1:
        return []
    scores = np.convolve(series, np.ones(window) / window, mode="valid")
    taken = np.zeros(len(scores), dtype=bool)
    chosen: list[Segment] = []
    for _ in range(count):
        candidates = np.where(taken, -np.inf, scores)
        best = int(np.argmax(candidates))
        if not np.isfinite(candidates[best]) or candidates[best] <= 0:
            break
        start = float(best)
        chosen.append(Segment(start, min(duration_s, start + window), float(scores[best])))
        taken[max(0, best - window + 1): best + window] = True
    return sorted(chosen, key=lambda s: s.start_s)


def motion_per_second(path: Path, duration_s: float, width: int = 160) -> np.ndarray:
    """Mean absolute difference between consecutive downscaled grey frames, averaged per second (0-1)."""
    seconds = max(1, int(np.ceil(duration_s)))
    total = np.zeros(seconds)
    counts = np.zeros(seconds)
    previous: np.ndarray | None = None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            grey = frame.to_ndarray(format="gray8", width=width, height=max(1, width * frame.height // frame.width))
            if previous is not None:
                second = min(seconds - 1, int(frame.time))
                total[second] += float(cv2.absdiff(grey, previous).mean()) / 255.0
                counts[second] += 1
            previous = grey
    return np.divide(total, counts, out=np.zeros_like(total), where=counts > 0)


def write_reel(source: Path, segments: list[Segment], output: Path, fade_s: float = 0.5) -> float:
    """Cut `segments` out of `source` into an H.264 MP4 with cross-fades; return the reel's length in seconds."""
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        fps = max(1.0, float(stream.average_rate or 25))  # a video under 0.5 fps would round to a zero rate
        width, height = stream.codec_context.width // 2 * 2, stream.codec_context.height // 2 * 2
        fade_frames = max(0, int(round(fade_s * fps)))
        with av.open(str(output), "w") as reel:
            encoder = reel.add_stream("libx264", rate=round(fps))
            encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
            encoder.options = {"preset": "veryfast", "crf": "23"}
            encoder.codec_context.time_base = Fraction(1, round(fps))
            held: deque[np.ndarray] = deque()
            written = 0
            for index, segment in enumerate(segments):
                fading_in = list(held) if index > 0 else []
                held.clear()
                for number, picture in enumerate(_segment_pictures(container, stream, segment, width, height)):
                    if number < len(fading_in):
                        weight = (number + 1) / (len(fading_in) + 1)
                        picture = cv2.addWeighted(fading_in[number], 1.0 - weight, picture, weight, 0.0)
                    held.append(picture)
                    if len(held) > fade_frames:
                        written += _encode(reel, encoder, held.popleft(), written)
            while held:
                written += _encode(reel, encoder, held.popleft(), written)
            for packet in encoder.encode(None):
                reel.mux(packet)
    return written / fps


def _segment_pictures(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                      segment: Segment, width: int, height: int) -> Iterator[np.ndarray]:
    assert stream.time_base is not None
    container.seek(int(segment.start_s / stream.time_base), stream=stream, backward=True, any_frame=False)
    for frame in container.decode(stream):
        if frame.time is None or frame.time < segment.start_s:
            continue
        if frame.time >= segment.end_s:
            return
        yield frame.to_ndarray(format="bgr24", width=width, height=height)


def _encode(reel: av.container.OutputContainer, encoder: av.video.stream.VideoStream, picture: np.ndarray,
            index: int) -> int:
    frame = av.VideoFrame.from_ndarray(picture, format="bgr24")
    frame.pts = index
    for packet in encoder.encode(frame):
        reel.mux(packet)
    return 1


def write_reel_edl(segments: list[Segment], source: Path, metric: str, path: Path, fade_s: float) -> None:
    """One JSON line per piece: where it sits in the reel and where it came from."""
    reel_s = 0.0
    with path.open("w") as file:
        for index, segment in enumerate(segments):
            file.write(json.dumps({
                "piece": index + 1, "reel_start_s": round(reel_s, 3), "source": source.name,
                "source_start_s": round(segment.start_s, 3), "source_end_s": round(segment.end_s, 3),
                "metric": metric, "score": round(segment.score, 4),
                "transition": "cross-fade" if index else "cut", "transition_s": fade_s if index else 0.0,
            }) + "\n")
            reel_s += segment.duration_s - (fade_s if index else 0.0)
