// Live view over a WebSocket: the compositor's own H.264 access units, decoded here with WebCodecs and
// drawn to a canvas as soon as each is decoded. No jitter buffer: a late picture is shown late, never held.
"use strict";

const SOCKET_CONNECT_MS = 8000;  // no picture within this: try the next transport
const SOCKET_MAX_DECODE_QUEUE = 3;  // more pictures waiting to be decoded: skip to the next key frame
const RECORD_HEADER = 16;  // shared/h264_stream.py: "H4", flags, 0, length (u32), pts (i64, 1/90000 s)
const liveSocket = { ws: null, decoder: null, presented: 0, decoded: 0, skipped: 0, codec: "" };

// "" when this browser can decode H.264 with WebCodecs, else why not (said on the badge).
async function webCodecsProblem() {
  if (typeof VideoDecoder === "undefined" || typeof EncodedVideoChunk === "undefined") {
    return window.isSecureContext ? "this browser has no WebCodecs" : "WebCodecs needs HTTPS or localhost";
  }
  try {
    const support = await VideoDecoder.isConfigSupported({ codec: "avc1.42E01F", optimizeForLatency: true });
    return support.supported ? "" : "this browser's WebCodecs has no H.264 decoder";
  } catch (error) {
    return `WebCodecs: ${error.message}`;
  }
}

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

// Plays `source` on `canvas`; resolves once the first picture is drawn, rejects when that cannot happen.
// `onLost` is called if the stream ends after it started.
function connectLiveSocket(canvas, source, onLost) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/api/live/socket?source=${encodeURIComponent(source)}`);
  ws.binaryType = "arraybuffer";
  liveSocket.ws = ws;
  const context = canvas.getContext("2d");
  let decoder = null, config = null, waitingForKey = true, started = false;
  return new Promise((resolve, reject) => {
    const fail = (why) => { if (!started) reject(new Error(why)); else if (onLost) onLost(why); };
    const timer = setTimeout(() => { fail(`no picture within ${SOCKET_CONNECT_MS / 1000} s`); releaseLiveSocket(); },
      SOCKET_CONNECT_MS);
    const draw = (frame) => {
      if (canvas.width !== frame.displayWidth || canvas.height !== frame.displayHeight) {
        canvas.width = frame.displayWidth; canvas.height = frame.displayHeight;
      }
      context.drawImage(frame, 0, 0);
      frame.close();
      liveSocket.presented += 1;
      canvas.dispatchEvent(new Event("picture"));
      if (!started) { started = true; clearTimeout(timer); resolve(); }
    };
    const open = (codec) => {
      config = { codec, optimizeForLatency: true };
      liveSocket.codec = codec;
      decoder = new VideoDecoder({ output: draw, error: (error) => { fail(`decoder: ${error.message}`); releaseLiveSocket(); } });
      decoder.configure(config);
      liveSocket.decoder = decoder;
    };
    ws.addEventListener("message", (event) => {
      const view = new DataView(event.data);
      if (event.data.byteLength < RECORD_HEADER || view.getUint8(0) !== 0x48 || view.getUint8(1) !== 0x34) return;
      const key = (view.getUint8(2) & 1) === 1;
      const data = new Uint8Array(event.data, RECORD_HEADER, view.getUint32(4));
      if (!key && waitingForKey) { liveSocket.skipped += 1; return; }
      if (decoder === null) {
        const codec = h264CodecOf(data);
        if (!codec) { fail("a key frame without SPS"); releaseLiveSocket(); return; }
        open(codec);
      }
      if (decoder.decodeQueueSize > SOCKET_MAX_DECODE_QUEUE) {
        // Behind: old pictures shown late are worse than a skip. Drop the queue at the next key frame.
        if (!key) { waitingForKey = true; liveSocket.skipped += 1; return; }
        decoder.reset();
        decoder.configure(config);
      }
      waitingForKey = false;
      const timestamp = Number(view.getBigInt64(8)) * 1e6 / 90000;
      decoder.decode(new EncodedVideoChunk({ type: key ? "key" : "delta", timestamp, data }));
      liveSocket.decoded += 1;
    });
    ws.addEventListener("close", (event) => {
      clearTimeout(timer);
      fail(`socket closed${event.reason ? `: ${event.reason}` : ` (${event.code})`}`);
    });
  });
}

function releaseLiveSocket() {
  if (liveSocket.ws) liveSocket.ws.close();
  if (liveSocket.decoder && liveSocket.decoder.state !== "closed") liveSocket.decoder.close();
  liveSocket.ws = null; liveSocket.decoder = null;
}

window.addEventListener("pagehide", releaseLiveSocket);
