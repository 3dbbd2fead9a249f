"""A self-contained HTML report of a stored-video analysis: labels over time, highlights, watch-list matches,
thumbnails."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from cloud.stored_video.annotated_copy import draw_moment  # noqa: E402
from cloud.stored_video.face_timeline import FaceTimeline  # noqa: E402
from cloud.stored_video.highlights import Segment  # noqa: E402
from cloud.stored_video.timeline import Timeline  # noqa: E402
from cloud.stored_video.video_file import VideoInfo  # noqa: E402

LABELS_CHARTED = 8
THUMBNAIL_WIDTH = 320


@dataclass(frozen=True)
class ReportFacts:
    video: VideoInfo
    job_id: str
    metric: str
    cost_usd: float
    outputs: dict[str, str]  # what was written: name -> file name
    face_search: str = ""  # one sentence on whether face search ran, and why not


def labels_chart_png(timeline: Timeline) -> bytes:
    """Confidence of the most frequent labels over time, one line each."""
    figure, axis = plt.subplots(figsize=(10, 4), dpi=100)
    sample_times = sorted(timeline.by_time)
    gaps = np.diff(sample_times) if len(sample_times) > 1 else np.array([1.0])
    break_after_s = 1.5 * float(np.median(gaps))
    for label in timeline.labels()[:LABELS_CHARTED]:
        times: list[float] = []
        confidences: list[float] = []
        for sighting in (s for s in timeline.sightings if s.label == label):
            if times and sighting.time_s - times[-1] > break_after_s:
                times.append(float("nan"))  # not seen in between: no line across the gap
                confidences.append(float("nan"))
            times.append(sighting.time_s)
            confidences.append(sighting.confidence)
        axis.plot(times, confidences, marker=".", linewidth=1, label=label)
    axis.set_xlabel("time in the video (s)")
    axis.set_ylabel("confidence (%)")
    axis.set_xlim(0, max(1.0, timeline.duration_s))
    axis.set_ylim(0, 100)
    axis.grid(alpha=0.3)
    if timeline.sightings:
        axis.legend(loc="lower right", fontsize="small", ncol=2)
    axis.set_title("Labels over time")
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def thumbnails(source: Path, timeline: Timeline, times: list[float], tolerance_s: float,
               faces: FaceTimeline | None = None) -> list[tuple[float, bytes]]:
    """JPEG thumbnails (with boxes) of the frames nearest the given times."""
    wanted = sorted(set(round(t, 2) for t in times))
    found: list[tuple[float, bytes]] = []
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        for time_s in wanted:
            assert stream.time_base is not None
            container.seek(int(time_s / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time is None or frame.time + 1e-3 < time_s:
                    continue
                picture = frame.to_ndarray(format="bgr24")
                draw_moment(picture, frame.time, timeline, faces, tolerance_s)
                height = max(1, THUMBNAIL_WIDTH * picture.shape[0] // picture.shape[1])
                small = cv2.resize(picture, (THUMBNAIL_WIDTH, height), interpolation=cv2.INTER_AREA)
                ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
                if ok:
                    found.append((time_s, jpeg.tobytes()))
                break
    return found


def watch_list_section(facts: ReportFacts, timeline: Timeline, faces: FaceTimeline | None, tolerance_s: float) -> str:
    """The "Watch-list matches" section: who was seen when, with a thumbnail of each person's best match."""
    if faces is None:
        return f"<p>{html.escape(facts.face_search or 'Face search did not run.')}</p>"
    people = faces.people()
    if not people:
        return (f"<p>No face matched the watch-list <code>{html.escape(faces.collection_id)}</code> "
                f"({faces.faces_seen} face sightings searched).</p>")
    pictures = dict(thumbnails(facts.video.path, timeline, [person.best.time_s for person in people], tolerance_s, faces))
    rows = "".join(
        f"<tr><td>{html.escape(person.name)}</td><td>{person.matches}</td><td>{person.first_s:.1f} s</td>"
        f"<td>{person.last_s:.1f} s</td><td>{person.best.similarity:.1f}</td>"
        f"<td><img alt='{html.escape(person.name)} at {person.best.time_s:.1f} s' src='data:image/jpeg;base64,"
        f"{base64.b64encode(pictures.get(round(person.best.time_s, 2), b'')).decode()}'></td></tr>"
        for person in people
    )
    return (f"<p>Searched against <code>{html.escape(faces.collection_id)}</code>: {len(faces.matches)} matches "
            f"among {faces.faces_seen} face sightings.</p>"
            "<table><tr><th>person</th><th>matches</th><th>first seen</th><th>last seen</th>"
            f"<th>best similarity</th><th>best match</th></tr>{rows}</table>")


def render_report(facts: ReportFacts, timeline: Timeline, segments: list[Segment], tolerance_s: float,
                  faces: FaceTimeline | None = None) -> str:
    chart = base64.b64encode(labels_chart_png(timeline)).decode()
    first_seen: dict[str, float] = {}
    for sighting in timeline.sightings:
        first_seen.setdefault(sighting.label, sighting.time_s)
    label_rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{sum(1 for s in timeline.sightings if s.label == label)}</td>"
        f"<td>{first_seen[label]:.1f} s</td></tr>"
        for label in timeline.labels()
    )
    pictures = thumbnails(facts.video.path, timeline, [s.start_s + s.duration_s / 2 for s in segments], tolerance_s,
                          faces)
    picture_of = dict(pictures)
    segment_rows = "".join(
        f"<figure><img alt='highlight {index + 1}' src='data:image/jpeg;base64,"
        f"{base64.b64encode(picture_of.get(round(s.start_s + s.duration_s / 2, 2), b'')).decode()}'>"
        f"<figcaption>{index + 1}: {s.start_s:.0f}-{s.end_s:.0f} s, {html.escape(facts.metric)} {s.score:.2f}"
        f"</figcaption></figure>"
        for index, s in enumerate(segments)
    )
    outputs = "".join(f"<li>{html.escape(name)}: <code>{html.escape(file)}</code></li>"
                      for name, file in facts.outputs.items())
    video = facts.video
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(video.path.name)}: stored-video analysis</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }}
table {{ border-collapse: collapse; }} td, th {{ border-bottom: 1px solid #ddd; padding: .3em .8em; text-align: left; }}
figure {{ display: inline-block; margin: .4em; }} figcaption {{ font-size: .85em; color: #555; }}
img.chart {{ width: 100%; max-width: 1000px; }}
</style></head><body>
<h1>{html.escape(video.path.name)}</h1>
<p>{video.duration_s:.1f} s, {video.width}x{video.height} at {video.fps:.1f} fps ({html.escape(video.codec)}),
{video.size_bytes / 1e6:.1f} MB. Rekognition Video job <code>{html.escape(facts.job_id)}</code>;
{len(timeline.sightings)} label sightings; analysis cost about {facts.cost_usd:.2f} USD.</p>
<h2>Labels over time</h2>
<img class="chart" alt="labels over time" src="data:image/png;base64,{chart}">
<h2>Highlights (by {html.escape(facts.metric)})</h2>
<div>{segment_rows or '<p>No stretch scored above zero: no highlights.</p>'}</div>
<h2>Watch-list matches</h2>
{watch_list_section(facts, timeline, faces, tolerance_s)}
<h2>Labels</h2>
<table><tr><th>label</th><th>sightings</th><th>first seen</th></tr>{label_rows}</table>
<h2>Files</h2><ul>{outputs}</ul>
</body></html>
"""
