// hybridcam dashboard: one EventSource for everything live; pictures are fetched only when news arrives.
"use strict";

const CLOUD_BOX_SECONDS = 20;   // cloud results are sparse: keep their boxes on the tile this long
const $ = (selector, root = document) => root.querySelector(selector);
const tiles = new Map();        // camera id -> tile state
let alertCount = 0;
let cloudRefresh = null;
let tileIntervalMs = 250;       // HYBRIDCAM_DASHBOARD_TILE_FPS, from /api/state

function text(value) { return value === undefined || value === null ? "" : String(value); }
function localTime(ts) { return new Date(ts * 1000).toLocaleString(); }
function utcTime(ts) { return new Date(ts * 1000).toISOString(); }
function money(usd) { return usd < 0.01 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(2)}`; }

// -- camera tiles ---------------------------------------------------------------------------

function tileFor(camera) {
  let tile = tiles.get(camera.camera_id);
  if (tile) return tile;
  const node = $("#tile-template").content.firstElementChild.cloneNode(true);
  node.dataset.camera = camera.camera_id;
  $(".name", node).textContent = camera.camera_id;
  $(".role", node).textContent = camera.role;
  const svg = $("svg", node);
  svg.setAttribute("viewBox", `0 0 ${camera.width} ${camera.height}`);
  tile = { node, svg, img: $("img", node), width: camera.width, height: camera.height,
           edge: null, nextEdge: null, loadingEdge: null, cloud: null, cloudAt: 0, loading: false, wanted: null,
           requestedAt: 0, timer: null };
  tile.img.addEventListener("load", () => {
    tile.loading = false;
    if (tile.loadingEdge) tile.edge = tile.loadingEdge;   // boxes and picture of the same frame
    drawBoxes(tile);
    loadPicture(tile);
  });
  tile.img.addEventListener("error", () => { tile.loading = false; setTimeout(() => loadPicture(tile), 1000); });
  tiles.set(camera.camera_id, tile);
  $("#cameras").appendChild(node);
  return tile;
}

function loadPicture(tile) {
  // One request per tile at a time, at most tileIntervalMs apart (each picture costs a JPEG encode
  // on the server and a decode here, competing with the live view); a newer wish replaces an older one.
  if (tile.loading || tile.wanted === null || tile.timer) return;
  const wait = tile.requestedAt + tileIntervalMs - performance.now();
  if (wait > 0) { tile.timer = setTimeout(() => { tile.timer = null; loadPicture(tile); }, wait); return; }
  tile.requestedAt = performance.now();
  tile.loading = true;
  tile.loadingEdge = tile.nextEdge;
  tile.img.src = `/api/cameras/${encodeURIComponent(tile.node.dataset.camera)}/snapshot.jpg?seq=${tile.wanted}&t=${Date.now()}`;
  tile.wanted = null;
}

const SVG_NS = "http://www.w3.org/2000/svg";

function svgNode(name, attributes, label) {
  // Labels come from Redis and from cloud results: they go in as text, never as markup.
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (label !== undefined) node.textContent = label;
  return node;
}

let regions = {};  // camera -> zones, lines and masks (normalised), from the site file

function regionShapes(tile) {
  const r = regions[tile.node.dataset.camera];
  if (!r) return [];
  const points = (poly) => poly.map(([x, y]) => `${x * tile.width},${y * tile.height}`).join(" ");
  const named = (kind, name, shape) => { shape.appendChild(svgNode("title", {}, `${kind} ${name}`)); return shape; };
  return [...r.masks.map((m) => named("mask", "", svgNode("polygon", { class: "mask", points: points(m) }))),
          ...Object.entries(r.zones).map(([n, z]) => named("zone", n, svgNode("polygon", { class: "zone", points: points(z) }))),
          ...Object.entries(r.lines).map(([n, l]) => named("line", n, svgNode("polyline", { class: "line", points: points(l) })))];
}

function drawBoxes(tile) {
  const shapes = regionShapes(tile);
  const cloudFresh = tile.cloud && Date.now() / 1000 - tile.cloudAt < CLOUD_BOX_SECONDS;
  for (const [source, set] of [["edge", tile.edge], ["cloud", cloudFresh ? tile.cloud : null]]) {
    if (!set) continue;
    const sx = tile.width / set.width, sy = tile.height / set.height;
    for (const d of set.boxes) {
      const [x1, y1, x2, y2] = d.box.map(Number);
      // An edge box whose object the cloud has labelled shows the cloud's label (kept for the track's life),
      // and what the person is doing when the pose stage says so.
      const named = d.cloud_label ? text(d.cloud_label) : "";
      const doing = Array.isArray(d.actions) && d.actions.length ? `: ${d.actions.map((a) => text(a).replace("_", " ")).join(", ")}` : "";
      const caption = (named || `${text(d.label)} ${(Number(d.score) * 100).toFixed(0)}%`) + doing;
      const rect = svgNode("rect", { class: `box ${source}`, x: x1 * sx, y: y1 * sy, width: (x2 - x1) * sx, height: (y2 - y1) * sy });
      rect.appendChild(svgNode("title", {}, `${named ? "cloud, on the edge's track" : source}: ${caption}`));
      shapes.push(rect);
      shapes.push(svgNode("text", { x: x1 * sx + 4, y: Math.max(y1 * sy - 6, 14), fill: `var(--${named ? "cloud" : source})`,
                                    class: named ? "cloud-label" : "", "font-size": Math.max(12, tile.height / 40) }, caption));
    }
  }
  tile.svg.replaceChildren(...shapes);
}

function showCamera(camera) {
  const tile = tileFor(camera);
  const capture = camera.capture || {}, edge = camera.edge || {};
  const badge = $(".state", tile.node);
  badge.textContent = capture.state || "unknown";
  badge.className = `badge state ${capture.state || "unknown"}`;
  badge.title = capture.message || "";
  $(".stats", tile.node).textContent = (camera.server && camera.server !== "edge" ? `server ${camera.server} · ` : "") +
    `capture ${(capture.fps || 0).toFixed(1)} fps · detect ${(edge.detect_fps || 0).toFixed(1)} fps · ` +
    `skipped ${edge.skipped || 0} · latency ${(edge.latency_ms || 0).toFixed(0)} ms · people ${edge.people || 0}`;
  if (camera.detections) {
    for (const source of ["edge", "cloud"]) if (camera.detections[source]) showDetections(camera.detections[source]);
  }
  if (!tile.img.getAttribute("src")) { tile.wanted = 0; loadPicture(tile); }
}

function showDetections(set) {
  const tile = tiles.get(set.camera_id);
  if (!tile) return;
  if (set.source === "cloud") {
    tile.cloud = set; tile.cloudAt = Date.now() / 1000;
    scheduleCloudRefresh();
    drawBoxes(tile);
  } else {
    tile.nextEdge = set;
    tile.wanted = set.seq;   // fetch the frame these boxes were found in; boxes are drawn when it arrives
    loadPicture(tile);
  }
}

// -- header, program, alerts, services --------------------------------------------------------

function showUplink(uplink) {
  $("#frames-sent").textContent = Math.round(uplink.frames_sampled || 0).toLocaleString();
  const sent = (uplink.bytes_sent || 0) + (uplink.patch_bytes || 0);
  const kbps = uplink.uptime_s ? sent * 8 / 1000 / uplink.uptime_s : 0;
  const budget = uplink.budget_kbps ? ` of ${Math.round(uplink.budget_kbps)}` : "";
  $("#bytes-sent").textContent = `${(sent / 1e6).toFixed(1)} MB, ${Math.round(kbps)}${budget} kbit/s`;
  $("#bytes-sent").title = `frames ${((uplink.bytes_sent || 0) / 1e6).toFixed(2)} MB, super-resolution patches ` +
    `${((uplink.patch_bytes || 0) / 1e6).toFixed(2)} MB; the budget saved ${((uplink.bytes_saved || 0) / 1e6).toFixed(2)} MB`;
  if (uplink.cost) {
    $("#cost-so-far").textContent = money(uplink.cost.so_far_usd);
    $("#cost-month").textContent = money(uplink.cost.cloud_month_usd);
    $("#cost-month").title = `hybrid total incl. edge box: ${money(uplink.cost.hybrid_month_usd)} / month (${uplink.cost.price_set})`;
  }
  showSampling(uplink.sampling);
}

function showSampling(sampling) {
  if (!sampling) return;
  const mix = (reasons) => Object.entries(reasons).map(([reason, count]) => `${reason} ${count}`).join(", ") || "-";
  const saved = $("#frames-saved");
  saved.textContent = `${Math.round(sampling.saved).toLocaleString()} (${(100 * sampling.saved_share).toFixed(1)}%)`;
  saved.title = `policy ${sampling.policy}; sent for: ${mix(sampling.sent_reasons)}; skipped as: ${mix(sampling.skipped_reasons)}`;
  $("#sent-reasons").textContent = mix(sampling.sent_reasons);
  $("#sent-reasons").title = `policy ${sampling.policy}; skipped as: ${mix(sampling.skipped_reasons)}`;
}

function showProgram(program) { $("#program-line").textContent = program.message || ""; }

function showAlert(alert, fresh) {
  const list = $("#alerts");
  $(".empty", list)?.remove();
  const item = document.createElement("li");
  item.className = fresh ? "alert fresh" : "alert";
  item.dataset.frame = alert.frame_id;
  item.innerHTML = `<strong></strong> on <span class="camera"></span> <span class="muted score"></span><br>` +
                   `<time class="muted"></time>`;
  $("strong", item).textContent = alert.label;
  $(".camera", item).textContent = alert.camera_id;
  $(".score", item).textContent = `${(alert.score * 100).toFixed(0)}%`;
  const time = $("time", item);
  time.textContent = localTime(alert.capture_ts);
  time.title = utcTime(alert.capture_ts);
  time.dateTime = utcTime(alert.capture_ts);
  if (fresh) list.prepend(item); else list.append(item);
  alertCount += 1;
  $("#alert-count").textContent = alertCount;
}

// -- watch-list panel (DOM built with textContent only: names come from the operator's enrolment) --

function showWatchHit(hit, fresh) {
  const list = $("#watch-hits");
  $(".empty", list)?.remove();
  const item = document.createElement("li");
  item.className = fresh ? "watch-hit fresh" : "watch-hit";
  item.dataset.frame = hit.frame_id;
  const face = document.createElement("img");
  face.className = "face";
  face.alt = `face of ${text(hit.person)}`;
  if (hit.crop) face.src = hit.crop;
  const person = document.createElement("strong");
  person.textContent = text(hit.person);
  const camera = document.createElement("span");
  camera.className = "camera";
  camera.textContent = text(hit.camera_id);
  const similarity = document.createElement("span");
  similarity.className = "muted similarity";
  similarity.textContent = `${Number(hit.similarity).toFixed(0)}%` + (hit.alerted ? " · alert sent" : "");
  const time = document.createElement("time");
  time.className = "muted";
  time.textContent = localTime(hit.capture_ts);
  time.title = utcTime(hit.capture_ts);
  time.dateTime = utcTime(hit.capture_ts);
  const words = document.createElement("div");
  words.append(person, " on ", camera, " ", similarity, document.createElement("br"), time);
  item.append(face, words);
  if (fresh) list.prepend(item); else list.append(item);
  while (list.children.length > 50) list.lastElementChild.remove();
}

function showWatchHits(hits) {
  const empty = document.createElement("li");
  empty.className = "empty muted";
  empty.textContent = "no watch-list hits yet";
  $("#watch-hits").replaceChildren(empty);
  (hits || []).forEach((hit) => showWatchHit(hit, false));
}

function showService(service) {
  const id = `svc-${service.service}-${service.instance}`.replace(/[^a-zA-Z0-9_-]/g, "_");
  let row = document.getElementById(id);
  if (!row) {
    row = document.createElement("tr");
    row.id = id;
    row.innerHTML = "<td class='name'></td><td><span class='badge'></span></td><td class='muted message'></td>";
    $("#services tbody").appendChild(row);
  }
  $(".name", row).textContent = `${service.service} ${service.instance}`;
  $(".badge", row).textContent = service.state;
  $(".badge", row).className = `badge ${service.state}`;
  $(".message", row).textContent = service.message || "";
}

function showLink(ok, why) {
  const link = $("#link");
  link.textContent = ok ? "live" : why;
  link.className = `badge ${ok ? "ok" : "down"}`;
}

function showRedis(ok) {
  const banner = $("#banner");
  banner.hidden = ok;
  banner.textContent = ok ? "" : "The edge cannot reach Redis: figures below are the last known ones.";
}

// -- cloud frames -----------------------------------------------------------------------------

function scheduleCloudRefresh() {
  if (cloudRefresh) return;
  cloudRefresh = setTimeout(() => { cloudRefresh = null; loadCloudFrames(); }, 1500);
}

async function loadCloudFrames() {
  const reply = await fetch("/api/cloud-frames").then((r) => r.json()).catch((e) => ({ frames: [], problem: String(e) }));
  const problem = $("#cloud-problem");
  problem.hidden = !reply.problem;
  problem.textContent = reply.problem || "";
  if (!reply.frames.length) return;
  const grid = $("#cloud-frames");
  grid.replaceChildren(...reply.frames.map((frame) => {
    const card = document.createElement("figure");
    card.className = "cloud-frame";
    card.dataset.frame = frame.frame_id;
    const labels = frame.labels.map((l) => `${l.name} ${l.confidence.toFixed(0)}%`).join(", ") || "no labels";
    card.innerHTML = `<img loading="lazy" alt=""><p><strong></strong> <time class="muted"></time></p><p class="labels"></p>`;
    $("img", card).src = frame.image_url;
    $("img", card).alt = `${frame.camera_id} ${frame.capture_time}`;
    $("strong", card).textContent = frame.camera_id;
    $("time", card).textContent = localTime(frame.capture_ts);
    $("time", card).title = `${frame.capture_time} (UTC), analysed by ${frame.backend} ${frame.model}`;
    $(".labels", card).textContent = labels;
    return card;
  }));
}

// -- wiring -----------------------------------------------------------------------------------

function applySnapshot(state) {
  $("#site").textContent = state.site;
  state.cameras.forEach(showCamera);
  $("#alerts").innerHTML = '<li class="empty muted">no alerts yet</li>';
  alertCount = 0;
  state.alerts.forEach((alert) => showAlert(alert, false));
  showWatchHits(state.watch_hits);
  showUplink(state.uplink);
  showProgram(state.program);
  state.services.forEach(showService);
  showRedis(state.redis_ok);
}

function startProgram(configured) {
  const img = $("#program"), missing = $("#program-missing");
  if (!configured) {
    img.hidden = true; missing.hidden = false;
    missing.textContent = "No program output configured (HYBRIDCAM_DASHBOARD_PROGRAM_URL).";
    return;
  }
  img.addEventListener("error", () => {
    missing.hidden = false; missing.textContent = "program output unreachable; retrying…";
    setTimeout(() => { img.src = `/program.mjpg?t=${Date.now()}`; }, 3000);
  });
  img.addEventListener("load", () => { missing.hidden = true; });
  img.src = "/program.mjpg";
}

async function main() {
  const state = await fetch("/api/state").then((r) => r.json());
  regions = await fetch("/api/regions").then((r) => (r.ok ? r.json() : {})).catch(() => ({}));
  if (state.tile_fps > 0) tileIntervalMs = 1000 / state.tile_fps;
  if (window.startLiveView) window.startLiveView(state.program_configured, startProgram);  // WebRTC, MJPEG fallback
  else startProgram(state.program_configured);
  if (state.cloud_configured) loadCloudFrames();
  else $("#cloud-frames").innerHTML =
    '<p class="muted">No cloud path on this edge (HYBRIDCAM_DASHBOARD_FRAMES_TABLE and _FRAMES_BUCKET are not set).</p>';
  const events = new EventSource("/events");
  const on = (type, handler) => events.addEventListener(type, (e) => handler(JSON.parse(e.data)));
  on("snapshot", applySnapshot);
  on("detections", showDetections);
  on("camera", showCamera);
  on("alert", (alert) => showAlert(alert, true));
  on("watch_hit", (hit) => showWatchHit(hit, true));
  on("uplink", showUplink);
  on("program", showProgram);
  on("service", showService);
  on("redis", (r) => showRedis(r.ok));
  events.onopen = () => showLink(true);
  events.onerror = () => showLink(false, "reconnecting…");
  setInterval(() => tiles.forEach(drawBoxes), 5000);  // lets stale cloud boxes fade; no network involved
}

main();
