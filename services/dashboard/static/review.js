// The review page: stored events on one timeline per camera, filters, thumbnails, the clip player,
// and jumping to any time in the retention window (each jump is one indexed query).
// Labels and names come from the site and from detectors: they go in as text, never as markup.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const WINDOW_S = 3600;
const STEP_S = 600;
const view = { until: Date.now() / 1000, selected: null, events: [] };

function text(value) { return value === undefined || value === null ? "" : String(value); }
function localTime(ts) { return new Date(ts * 1000).toLocaleString(); }
function el(name, attributes = {}, content) {
  const node = document.createElement(name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (content !== undefined) node.textContent = content;
  return node;
}

function filters() {
  const params = new URLSearchParams();
  for (const name of ["camera", "rule", "zone", "label"]) {
    const value = $(`#f-${name}`).value;
    if (value) params.set(name, value);
  }
  return params;
}

function toInputValue(ts) {
  const d = new Date(ts * 1000), pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fillFacets(facets) {
  for (const name of ["camera", "rule", "zone", "label"]) {
    const select = $(`#f-${name}`), current = select.value;
    const options = [el("option", { value: "" }, "all"), ...(facets[name] || []).map((v) => el("option", { value: v }, v))];
    select.replaceChildren(...options);
    select.value = (facets[name] || []).includes(current) ? current : "";
  }
}

async function load() {
  const params = filters();
  params.set("since", String(view.until - WINDOW_S));
  params.set("until", String(view.until));
  const answer = await fetch(`/api/events?${params}`);
  const problem = $("#review-problem");
  if (!answer.ok) {
    problem.hidden = false;
    problem.textContent = (await answer.json().catch(() => ({}))).detail || `the events could not be read (${answer.status})`;
    return;
  }
  problem.hidden = true;
  const data = await answer.json();
  fillFacets(data.facets);
  view.events = data.events;
  const windowText = $("#window-text");
  windowText.textContent = `${localTime(data.since)} – ${localTime(data.until)}`;
  windowText.dataset.since = String(data.since);
  windowText.dataset.until = String(data.until);
  $("#event-count").textContent = String(data.events.length);
  $("#span-text").textContent = data.span ? `(stored: ${localTime(data.span[0])} – ${localTime(data.span[1])})` : "(none stored)";
  $("#jump-to").value = toInputValue(view.until);
  drawTimelines(data);
  drawList(data.events);
}

function drawTimelines(data) {
  const cameras = [...new Set([...data.events.map((e) => e.camera), ...data.activity.map((a) => a.camera)])].sort();
  const span = data.until - data.since;
  const rows = cameras.map((camera) => {
    const row = el("div", { class: "timeline", "data-camera": camera });
    row.appendChild(el("span", { class: "camera-name" }, camera));
    const peak = Math.max(1, ...data.activity.filter((a) => a.camera === camera).map((a) => a.objects));
    for (const bucket of data.activity.filter((a) => a.camera === camera)) {
      const bar = el("div", { class: "activity", title: `${bucket.objects} objects at ${localTime(bucket.bucket_ts)}` });
      bar.style.left = `${((bucket.bucket_ts - data.since) / span) * 100}%`;
      bar.style.height = `${(bucket.objects / peak) * 40}%`;
      row.appendChild(bar);
    }
    for (const event of data.events.filter((e) => e.camera === camera)) {
      const end = event.end_ts || data.until;
      const marker = el("button", { type: "button", class: `marker sev-${event.severity}`, "data-event": event.id,
        title: `${event.rule} · ${event.labels.join(", ")} · ${event.zone} · ${localTime(event.start_ts)}` });
      marker.style.left = `${Math.max(0, (event.start_ts - data.since) / span) * 100}%`;
      marker.style.width = `${Math.max(0.3, ((end - event.start_ts) / span) * 100)}%`;
      marker.addEventListener("click", () => select(event));
      row.appendChild(marker);
    }
    return row;
  });
  $("#timelines").replaceChildren(...(rows.length ? rows : [el("p", { class: "muted" }, "nothing in this hour")]));
}

function drawList(events) {
  const items = events.map((event) => {
    const item = el("li", { "data-event": event.id, "data-rule": event.rule });
    item.appendChild(el("span", { class: `sev sev-${event.severity}` }));
    if (event.snapshot) item.appendChild(el("img", { src: `/api/events/${encodeURIComponent(event.id)}/snapshot.jpg`, alt: "", loading: "lazy" }));
    else item.appendChild(el("img", { alt: "" }));
    const words = el("div");
    words.appendChild(el("strong", {}, `${event.rule}`));
    words.appendChild(el("div", {}, `${event.labels.join(", ")} in ${event.zone} on ${event.camera}`));
    words.appendChild(el("div", { class: "muted" }, localTime(event.start_ts)));
    item.appendChild(words);
    item.addEventListener("click", () => select(event));
    return item;
  });
  $("#event-list").replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, "no events in this hour")]));
  markSelected();
}

function markSelected() {
  for (const node of document.querySelectorAll("[data-event]")) node.classList.toggle("selected", node.dataset.event === view.selected);
}

function select(event) {
  view.selected = event.id;
  markSelected();
  history.replaceState(null, "", `/events/${encodeURIComponent(event.id)}`);
  $("#player-title").textContent = `${event.rule} on ${event.camera}, ${localTime(event.start_ts)}`;
  const video = $("#clip"), picture = $("#player-snapshot");
  video.hidden = !event.clip;
  picture.hidden = Boolean(event.clip) || !event.snapshot;
  if (event.clip) {
    video.src = `/api/events/${encodeURIComponent(event.id)}/clip.mp4`;
    video.play().catch(() => {});  // muted, so autoplay is allowed; the controls remain
  } else if (event.snapshot) {
    picture.src = `/api/events/${encodeURIComponent(event.id)}/snapshot.jpg`;
  }
  const details = [["rule", event.rule], ["severity", event.severity], ["camera", event.camera], ["zone", event.zone],
    ["labels", event.labels.join(", ")], ["tracks", event.track_ids.join(", ")], ["start", localTime(event.start_ts)],
    ["end", event.end_ts ? localTime(event.end_ts) : "open"], ["cloud labels", event.cloud_labels.join(", ") || "–"],
    ["face match", event.face_match || "–"], ["notified", event.notified_ts ? localTime(event.notified_ts) : "no"]];
  $("#event-details").replaceChildren(...details.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, text(v))]));
}

function jump(until) {
  view.until = until;
  load();
}

async function openFromAddress() {
  const match = location.pathname.match(/^\/events\/([^/]+)$/);
  if (!match) return null;
  const answer = await fetch(`/api/events/${match[1]}`);
  if (!answer.ok) {
    $("#review-problem").hidden = false;
    $("#review-problem").textContent = (await answer.json().catch(() => ({}))).detail || "event not found";
    return null;
  }
  return answer.json();
}

async function main() {
  for (const name of ["camera", "rule", "zone", "label"]) $(`#f-${name}`).addEventListener("change", load);
  $("#earlier").addEventListener("click", () => jump(view.until - STEP_S));
  $("#later").addEventListener("click", () => jump(view.until + STEP_S));
  $("#now").addEventListener("click", () => jump(Date.now() / 1000));
  $("#jump-to").addEventListener("change", (e) => {
    const ts = new Date(e.target.value).getTime() / 1000;
    if (!Number.isNaN(ts)) jump(ts);
  });
  const event = await openFromAddress();
  if (event) view.until = Math.min(Date.now() / 1000, event.start_ts + WINDOW_S / 2);
  await load();
  if (event) select(event);
}

main();
