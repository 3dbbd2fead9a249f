// Live view over a WebSocket: the compositor's own H.264 access units, read, decoded with WebCodecs and drawn
// on the program canvas by a worker (live_socket_worker.js; the canvas handed over as an OffscreenCanvas),
// so a busy page's main thread never holds a picture. No jitter buffer: a late picture is shown late, never held.
"use strict";

const SOCKET_CONNECT_MS = 20000;  // no picture within this: try the next transport (a busy compositor may take seconds to its next key frame)
const liveSocket = { worker: null, presented: 0, decoded: 0, skipped: 0, undrawn: 0, width: 0, height: 0, codec: "" };

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

// Plays `source` on `canvas`; resolves once the first picture is shown, rejects when that cannot happen.
// `onLost` is called if the stream ends after it started.
function connectLiveSocket(canvas, source, onLost) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/api/live/socket?source=${encodeURIComponent(source)}`;
  const worker = new Worker("/static/live_socket_worker.js");
  liveSocket.worker = worker;
  canvas.hidden = false;
  let context = null;
  if (canvas.transferControlToOffscreen) {
    const offscreen = canvas.transferControlToOffscreen();  // once per canvas: a later try gets a fresh one
    worker.postMessage({ url, canvas: offscreen }, [offscreen]);
  } else {
    context = canvas.getContext("2d");
    worker.postMessage({ url });
  }
  let started = false;
  return new Promise((resolve, reject) => {
    const fail = (why) => { if (!started) reject(new Error(why)); else if (onLost) onLost(why); };
    const begin = () => { if (!started) { started = true; clearTimeout(timer); resolve(); } };
    const timer = setTimeout(() => { fail(`no picture within ${SOCKET_CONNECT_MS / 1000} s`); releaseLiveSocket(); },
      SOCKET_CONNECT_MS);
    worker.addEventListener("message", (event) => {
      const message = event.data;
      if (message.type === "frame") {  // no OffscreenCanvas: drawn here
        if (canvas.width !== message.frame.displayWidth) {
          canvas.width = message.frame.displayWidth; canvas.height = message.frame.displayHeight;
        }
        context.drawImage(message.frame, 0, 0);
        message.frame.close();
        begin();
      } else if (message.type === "shown") {
        Object.assign(liveSocket, message.stats);
        begin();
      } else if (message.type === "codec") {
        liveSocket.codec = message.codec;
      } else if (message.type === "stats") {
        Object.assign(liveSocket, message.stats);
      } else if (message.type === "closed") {
        clearTimeout(timer);
        releaseLiveSocket();
        fail(message.why);
      }
    });
    worker.addEventListener("error", (event) => { clearTimeout(timer); releaseLiveSocket(); fail(`worker: ${event.message}`); });
  });
}

function releaseLiveSocket() {
  if (liveSocket.worker) liveSocket.worker.terminate();
  liveSocket.worker = null;
}

window.addEventListener("pagehide", releaseLiveSocket);
