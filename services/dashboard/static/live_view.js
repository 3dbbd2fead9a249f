// Live view of the program: WebSocket + WebCodecs (live_socket.js), WebRTC, or the MJPEG preview, the best
// that works here, and the badge says which (and why the better ones did not).
"use strict";

const LIVE_CONNECT_MS = 20000;  // no picture within this: give up on WebRTC (a busy compositor may take seconds to its next key frame)
const liveView = { id: null, pc: null };

function waitForIceGathering(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs);  // host candidates come at once; do not wait for a missing server
  });
}

async function connectWebRtc(video, source, iceServers) {
  const pc = new RTCPeerConnection({ iceServers });
  liveView.pc = pc;
  pc.addTransceiver("video", { direction: "recvonly" });
  const playing = new Promise((resolve, reject) => {
    pc.addEventListener("track", (event) => {
      // A live view, not a film: ask the receiver for the smallest jitter buffer it can keep (Chrome 114+).
      if ("jitterBufferTarget" in event.receiver) event.receiver.jitterBufferTarget = 0;
      if ("playoutDelayHint" in event.receiver) event.receiver.playoutDelayHint = 0;  // its older name
      video.srcObject = event.streams[0] || new MediaStream([event.track]);
      video.addEventListener("playing", resolve, { once: true });
      video.play().catch(() => {});
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed") reject(new Error("connection failed"));
    });
    setTimeout(() => reject(new Error(`no picture within ${LIVE_CONNECT_MS / 1000} s`)), LIVE_CONNECT_MS);
  });
  playing.catch(() => {});  // awaited below; an early failure must not also count as unhandled
  await pc.setLocalDescription(await pc.createOffer());
  await waitForIceGathering(pc, 2000);
  const answer = await fetch("/api/webrtc/offer", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer", source }),
  });
  if (!answer.ok) throw new Error(`the dashboard answered ${answer.status}: ${await answer.text()}`);
  const reply = await answer.json();
  liveView.id = reply.id;
  await pc.setRemoteDescription({ sdp: reply.sdp, type: reply.type });
  await playing;
  return pc;
}

function releaseWebRtc() {
  if (liveView.id) navigator.sendBeacon(`/api/webrtc/${liveView.id}/close`);
  if (liveView.pc) liveView.pc.close();
  liveView.id = null; liveView.pc = null;
}

// Takes the program panel with the best live transport that works here: the server's order
// (HYBRIDCAM_DASHBOARD_LIVE_TRANSPORTS, or ?transport=NAME for one), each tried in turn; MJPEG last.
// The badge says which one plays, and why the better ones did not.
async function startLiveView(mjpegConfigured, startMjpeg) {
  const video = document.querySelector("#program-video"), img = document.querySelector("#program");
  const canvas = document.querySelector("#program-canvas");
  const mode = document.querySelector("#program-mode");
  const show = (text, kind, title = "") => {
    mode.textContent = text; mode.className = `badge ${kind}`; mode.title = title; mode.hidden = false;
  };
  const config = await fetch("/api/live").then((r) => r.json()).catch((error) => ({ configured: false, problem: String(error) }));
  const query = new URLSearchParams(location.search);
  const source = query.get("live") || "program";
  const order = query.get("transport") ? [query.get("transport")] : (config.transports || ["webrtc", "mjpeg"]);
  const failures = [];
  const fallBack = () => {
    video.hidden = true; canvas.hidden = true;
    img.hidden = false;
    const why = failures.join("; ");
    if (mjpegConfigured) show(why ? `MJPEG (${why})` : "MJPEG", why ? "warn" : "ok", why);
    else mode.hidden = true;  // no program at all: the panel says so
    startMjpeg(mjpegConfigured);
  };
  const named = (transport) => (source === "program" ? transport : `${transport} (${source})`);
  const triedFirst = () => (failures.length ? `tried first: ${failures.join("; ")}` : "");
  if (!config.configured) {
    if (order.some((t) => t !== "mjpeg")) failures.push(`live view unavailable: ${config.problem}`);
    fallBack();
    return;
  }
  offerSources(source, config.cameras || []);
  for (const transport of order) {
    if (transport === "mjpeg") break;
    try {
      if (transport === "websocket") {
        const problem = await webCodecsProblem();
        if (problem) throw new Error(problem);
        img.hidden = true; video.hidden = true;
        show("WebSocket connecting…", "unknown");
        await connectLiveSocket(canvas, source, (why) => { failures.push(`WebSocket lost: ${why}`); fallBack(); });
        show(named("WebSocket"), "ok", [`H.264 ${liveSocket.codec} decoded in the page (WebCodecs)`, triedFirst()].filter(Boolean).join("; "));
        return;
      }
      if (transport === "webrtc") {
        if (typeof RTCPeerConnection === "undefined") throw new Error("this browser has no WebRTC");
        const rtc = await fetch("/api/webrtc").then((r) => r.json());
        img.hidden = true; canvas.hidden = true; video.hidden = false;
        show("WebRTC connecting…", "unknown");
        const pc = await connectWebRtc(video, source, rtc.ice_servers || []);
        show(named("WebRTC"), "ok", triedFirst());
        pc.addEventListener("connectionstatechange", () => {
          if (pc.connectionState === "failed") {  // "disconnected" may heal by itself; "failed" does not
            releaseWebRtc();
            failures.push(`WebRTC unavailable: connection ${pc.connectionState}`);
            fallBack();
          }
        });
        return;
      }
      throw new Error("unknown transport");
    } catch (error) {
      if (transport === "webrtc") releaseWebRtc(); else releaseLiveSocket();
      failures.push(`${transport === "webrtc" ? "WebRTC" : transport === "websocket" ? "WebSocket" : transport} unavailable: ${error.message}`);
    }
  }
  fallBack();
}

// A choice of what the live view shows: the program or one camera (that one is encoded by the dashboard).
function offerSources(current, cameras) {
  const select = document.querySelector("#live-source");
  for (const value of ["program", ...cameras.map((id) => `camera:${id}`)]) {
    const option = document.createElement("option");
    option.value = value; option.textContent = value === "program" ? "program" : value.slice(7);
    option.selected = value === current;
    select.append(option);
  }
  select.hidden = false;
  select.addEventListener("change", () => {
    const query = new URLSearchParams(location.search);
    query.delete("token");  // the cookie carries it from here on
    query.set("live", select.value);
    location.search = query.toString();
  });
}

window.addEventListener("pagehide", releaseWebRtc);
window.startLiveView = startLiveView;
