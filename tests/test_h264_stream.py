"""The compositor's h264 output: the encoded program over HTTP as framed Annex-B access units.

A real libx264 encoder feeds a real HTTP server; a reader joining mid-stream starts on a key
frame that carries its SPS/PPS, and FFmpeg decodes what it got, timecodes intact.
"""

from __future__ import annotations

import threading
import time
import urllib.request

import av
import numpy as np
import pytest

from services.compositor.encoder import H264Encoder
from services.compositor.outputs.h264_http import H264HttpStream
from services.compositor.renderer import read_timecode, stamp_timecode
from shared.h264_stream import CLOCK, AccessUnit, H264StreamError, RecordReader, encode_record

W, H, FPS = 480, 272, 10  # wide enough for the 384-pixel timecode


def test_records_survive_any_chunking_and_garbage_is_refused() -> None:
    units = [AccessUnit(b"\x00\x00\x00\x01" + bytes([i]) * (i * 37 % 500), i * 9000, i % 10 == 0) for i in range(25)]
    stream = b"".join(encode_record(u) for u in units)
    reader, got = RecordReader(), []
    for start in range(0, len(stream), 7):
        got.extend(reader.feed(stream[start:start + 7]))
    assert got == units
    with pytest.raises(H264StreamError):
        list(RecordReader().feed(b"GET / HTTP/1.1\r\n\r\n"))


def test_a_reader_joining_late_starts_on_a_key_frame_and_decodes_the_program() -> None:
    encoder = H264Encoder(W, H, FPS, keyframe_s=1.0)
    output = H264HttpStream(port=0, host="127.0.0.1")
    output.start(encoder.stream)
    canvas = np.zeros((H, W, 3), dtype=np.uint8)
    stop, sent_ts = threading.Event(), []

    def program() -> None:
        pts = 0
        while not stop.is_set():
            ts = time.time()
            stamp_timecode(canvas, ts)
            sent_ts.append(round(ts, 3))
            for packet in encoder.encode(canvas, pts):
                output.send_packet(packet)
            pts += 1
            time.sleep(1 / FPS)

    thread = threading.Thread(target=program, daemon=True)
    thread.start()
    try:
        time.sleep(0.45)  # join mid-GOP
        units: list[AccessUnit] = []
        reader = RecordReader()
        with urllib.request.urlopen(f"http://127.0.0.1:{output.port}/stream", timeout=10) as answer:
            assert answer.headers["Content-Type"] == "application/x-hybridcam-h264"
            while len(units) < 25:
                units.extend(reader.feed(answer.read1(65536)))
    finally:
        stop.set()
        thread.join()
        output.close()
        encoder.close()
    assert units[0].is_keyframe and units[0].data.startswith(b"\x00\x00\x00\x01\x67")  # SPS first
    assert sum(u.is_keyframe for u in units) >= 2
    assert all(b.pts - a.pts == int(1 / FPS / CLOCK) for a, b in zip(units, units[1:]))
    decoder = av.CodecContext.create("h264", "r")
    decoded = [frame for u in units for frame in decoder.decode(av.Packet(u.data))]
    assert len(decoded) >= 24
    codes = [read_timecode(f.to_ndarray(format="gray")) for f in decoded]
    assert all(code in sent_ts for code in codes)
