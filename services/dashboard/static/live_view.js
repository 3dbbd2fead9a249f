// Live view of the program over WebRTC; falls back to the MJPEG preview (and says so) when it cannot connect.
"use strict";

const LIVE_CONNECT_MS = 8000;   // no picture within this: give up on WebRTC, show MJPEG
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

// Takes the program panel when the dashboard has an encoded program; returns false to leave it to MJPEG.
async function startLiveView(mjpegConfigured, startMjpeg) {
  const video = document.querySelector("#program-video"), img = document.querySelector("#program");
  const mode = document.querySelector("#program-mode");
  const show = (text, kind) => { mode.textContent = text; mode.className = `badge ${kind}`; mode.hidden = false; };
  let config;
  try {
    config = await fetch("/api/webrtc").then((r) => r.json());
  } catch (error) {
    config = { configured: false, problem: String(error) };
  }
  const fallBack = (why) => {
    video.hidden = true;
    img.hidden = false;
    if (mjpegConfigured) show(`MJPEG (WebRTC unavailable: ${why})`, "warn");
    else mode.hidden = true;  // no program at all: the panel says so
    startMjpeg(mjpegConfigured);
  };
  if (!config.configured || typeof RTCPeerConnection === "undefined") {
    fallBack(config.configured ? "this browser has no WebRTC" : config.problem);
    return;
  }
  img.hidden = true;
  video.hidden = false;
  show("WebRTC connecting…", "unknown");
  const source = new URLSearchParams(location.search).get("live") || "program";
  offerSources(source, config.cameras || []);
  try {
    const pc = await connectWebRtc(video, source, config.ice_servers || []);
    show(source === "program" ? "WebRTC" : `WebRTC (${source})`, "ok");
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed") {  // "disconnected" may heal by itself; "failed" does not
        releaseWebRtc();
        fallBack(`connection ${pc.connectionState}`);
      }
    });
  } catch (error) {
    releaseWebRtc();
    fallBack(error.message);
  }
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
