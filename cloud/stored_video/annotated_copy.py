"""An annotated copy of the video: every frame with the labels and boxes of the nearest analysed moment, and the
named boxes of watch-list matches (when face search ran)."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from cloud.stored_video.face_timeline import FaceTimeline
from cloud.stored_video.timeline import Timeline

BOX_COLOUR = (0, 200, 255)  # BGR
MATCH_COLOUR = (60, 220, 60)  # BGR: watch-list matches stand out from the labels


def draw_sightings(picture: np.ndarray, sightings: list[tuple[str, float, tuple[float, float, float, float]]],
                   colour: tuple[int, int, int] = BOX_COLOUR, text_below: bool = False) -> None:
    height, width = picture.shape[:2]
    for label, confidence, (left, top, box_w, box_h) in sightings:
        x1, y1 = int(left * width), int(top * height)
        x2, y2 = int((left + box_w) * width), int((top + box_h) * height)
        cv2.rectangle(picture, (x1, y1), (x2, y2), colour, 2)
        text_y = min(height - 4, y2 + 14) if text_below else max(14, y1 - 4)
        cv2.putText(picture, f"{label} {confidence:.0f}%", (x1 + 2, text_y), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5, colour, 1, cv2.LINE_AA)


def draw_moment(picture: np.ndarray, time_s: float, timeline: Timeline, faces: FaceTimeline | None,
                tolerance_s: float) -> None:
    """The labels, then the watch-list matches (named) of the analysed moment nearest `time_s`."""
    draw_sightings(picture, timeline.boxes_at(time_s, tolerance_s))
    if faces is not None:
        draw_sightings(picture, faces.boxes_at(time_s, tolerance_s), MATCH_COLOUR, text_below=True)  # labels sit above


def write_annotated_copy(source: Path, timeline: Timeline, output: Path, tolerance_s: float,
                         progress: Callable[[float], None] | None = None, faces: FaceTimeline | None = None) -> int:
    """Write `output` (H.264 MP4, the source's size and rate); return the number of frames written."""
    written = 0
    with av.open(str(source)) as container, av.open(str(output), "w") as copy:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = max(1, round(float(stream.average_rate or 25)))  # a video under 0.5 fps would round to 0
        width, height = stream.codec_context.width // 2 * 2, stream.codec_context.height // 2 * 2
        encoder = copy.add_stream("libx264", rate=rate)
        encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
        encoder.options = {"preset": "veryfast", "crf": "23"}
        encoder.codec_context.time_base = Fraction(1, rate)
        for frame in container.decode(stream):
            picture = frame.to_ndarray(format="bgr24", width=width, height=height)
            if frame.time is not None:
                draw_moment(picture, frame.time, timeline, faces, tolerance_s)
                if progress:
                    progress(frame.time)
            out = av.VideoFrame.from_ndarray(picture, format="bgr24")
            out.pts = written
            for packet in encoder.encode(out):
                copy.mux(packet)
            written += 1
        for packet in encoder.encode(None):
            copy.mux(packet)
    return written
