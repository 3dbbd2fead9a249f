// The WebSocket live view, off the page's main thread (which a busy page keeps for its tiles and events):
// reads the compositor's H.264 records, decodes them with WebCodecs and draws each picture on the page's
// canvas, handed over as an OffscreenCanvas, so nothing waits for the main thread. Asked to start with
// {url, canvas}; without a canvas (no OffscreenCanvas in this browser) each picture goes to the page instead.
// self.onPicture, when set (bench/live_view.py sets it), is called with the canvas after each picture.
"use strict";

const RECORD_HEADER = 16;  // shared/h264_stream.py: "H4", flags, 0, length (u32), pts (i64, 1/90000 s)
const MAX_DECODE_QUEUE = 10;  // more units waiting for the decoder (well behind, not a burst): skip to the next key frame
const stats = { decoded: 0, skipped: 0, presented: 0, undrawn: 0, width: 0, height: 0 };

// The codec string of an Annex-B key frame, from its SPS (profile, constraints, level): "avc1.PPCCLL".
function h264CodecOf(bytes) {
  for (let i = 0; i + 6 < bytes.length; i++) {
    if (bytes[i] === 0 && bytes[i + 1] === 0 && bytes[i + 2] === 1 && (bytes[i + 3] & 0x1f) === 7) {
      const hex = (b) => b.toString(16).padStart(2, "0");
      return `avc1.${hex(bytes[i + 4])}${hex(bytes[i + 5])}${hex(bytes[i + 6])}`;
    }
  }
  return "";
}

// Shows one decoded picture; drops it when a newer one is already being decoded.
function shower(canvas, decoderOf) {
  const context = canvas ? canvas.getContext("2d") : null;
  return (frame) => {
    if (decoderOf().decodeQueueSize > 0 && stats.presented > 0) { frame.close(); stats.undrawn += 1; return; }
    stats.width = frame.displayWidth; stats.height = frame.displayHeight;
    stats.presented += 1;
    if (!context) { postMessage({ type: "frame", frame }, [frame]); return; }
    if (canvas.width !== frame.displayWidth || canvas.height !== frame.displayHeight) {
      canvas.width = frame.displayWidth; canvas.height = frame.displayHeight;
    }
    context.drawImage(frame, 0, 0);
    frame.close();
    if (stats.presented === 1) postMessage({ type: "shown", stats });
    if (self.onPicture) self.onPicture(canvas);
  };
}

function play(url, canvas) {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  let decoder = null, config = null, waitingForKey = true;
  const stop = (why) => {
    postMessage({ type: "closed", why });
    if (decoder && decoder.state !== "closed") decoder.close();
    ws.close();
  };
  const open = (codec) => {
    config = { codec, optimizeForLatency: true };
    decoder = new VideoDecoder({
      output: shower(canvas, () => decoder),
      error: (error) => stop(`decoder: ${error.message}`),
    });
    decoder.configure(config);
    postMessage({ type: "codec", codec });
  };
  ws.addEventListener("message", (event) => {
    const view = new DataView(event.data);
    if (event.data.byteLength < RECORD_HEADER || view.getUint8(0) !== 0x48 || view.getUint8(1) !== 0x34) return;
    const key = (view.getUint8(2) & 1) === 1;
    const data = new Uint8Array(event.data, RECORD_HEADER, view.getUint32(4));
    if (!key && waitingForKey) { stats.skipped += 1; return; }
    if (decoder === null) {
      const codec = h264CodecOf(data);
      if (!codec) { stop("a key frame without SPS"); return; }
      open(codec);
    }
    if (decoder.decodeQueueSize > MAX_DECODE_QUEUE) {
      // Well behind: old pictures shown late are worse than a skip. Drop the queue at the next key frame.
      if (!key) { waitingForKey = true; stats.skipped += 1; return; }
      decoder.reset();
      decoder.configure(config);
    }
    waitingForKey = false;
    const timestamp = Number(view.getBigInt64(8)) * 1e6 / 90000;
    decoder.decode(new EncodedVideoChunk({ type: key ? "key" : "delta", timestamp, data }));
    stats.decoded += 1;
  });
  ws.addEventListener("close", (event) => stop(event.reason || `socket closed (${event.code})`));
  setInterval(() => postMessage({ type: "stats", stats }), 1000);
}

self.addEventListener("message", (event) => play(event.data.url, event.data.canvas));
