// The fleet console: reads the API with a bearer token (never a query string, which servers log).
// The token comes from the login form, or from the URL fragment (#token=... here, #access_token=...
// when the user pool's hosted login sends the browser back); the fragment is removed at once.
"use strict";

const state = { token: sessionStorage.getItem("fleet-token") || "", api: "api", timer: null };

function takeTokenFromFragment() {
  const fragment = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  const token = fragment.get("token") || fragment.get("access_token");
  if (token) {
    state.token = token;
    sessionStorage.setItem("fleet-token", token);
    history.replaceState(null, "", window.location.pathname);
  }
}

async function loadConfig() {
  try {
    const answer = await fetch("config.json", { cache: "no-store" });
    if (answer.ok) {
      const config = await answer.json();
      if (config.api) state.api = config.api.replace(/\/$/, "");
      if (config.login) {
        const link = document.getElementById("hosted-login");
        link.href = config.login;
        link.hidden = false;
      }
    }
  } catch (error) { /* no config: the API is under api/ next to the page */ }
}

async function api(path) {
  const answer = await fetch(`${state.api}${path}`, { headers: { Authorization: `Bearer ${state.token}` }, cache: "no-store" });
  if (answer.status === 401) {
    signOut("signed out: the API refused the token");
    throw new Error("unauthorised");
  }
  if (!answer.ok) throw new Error(`${path}: HTTP ${answer.status}`);
  return answer.json();
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function stateBadge(value) {
  return element("span", `state ${value}`, value);
}

function renderServers(body, servers) {
  body.replaceChildren();
  for (const server of servers) {
    const row = element("tr", "server");
    row.dataset.server = server.server;
    row.dataset.state = server.state;
    row.append(element("td", "name", server.server));
    const stateCell = element("td");
    stateCell.append(stateBadge(server.state));
    row.append(stateCell);
    row.append(element("td", "age", `${server.sent_time} (${Math.round(server.age_s)} s ago)`));
    row.append(element("td", "cameras", server.cameras.map(c => `${c.camera_id}: ${c.state}`).join(", ") || "none"));
    row.append(element("td", "services", server.services.map(s => `${s.service}: ${s.state}`).join(", ") || "none"));
    body.append(row);
  }
}

// Frames already on the page keep their figure, so a refresh fetches only the pictures of new frames
// (each answer signs its picture links afresh: new URLs the browser would download again).
const figures = new Map();

function frameFigure(frame) {
  const shown = figures.get(frame.frame_id);
  if (shown) return shown;
  const figure = element("figure", "frame");
  figure.dataset.frameId = frame.frame_id;
  const image = element("img");
  image.alt = `${frame.camera_id} ${frame.capture_time}`;
  if (frame.image_url) image.src = frame.image_url;
  const labels = frame.labels.map(l => `${l.name} ${Math.round(l.confidence)}%`).join(", ");
  figure.append(image, element("figcaption", "", `${frame.camera_id} · ${frame.capture_time} · ${labels || "no labels"}`));
  figures.set(frame.frame_id, figure);
  return figure;
}

async function renderSite(template, site) {
  const section = template.content.firstElementChild.cloneNode(true);
  section.dataset.site = site.site;
  section.querySelector(".site-name").textContent = site.site;
  section.querySelector(".state").replaceWith(stateBadge(site.state));
  renderServers(section.querySelector("tbody"), site.servers);
  const id = encodeURIComponent(site.site);
  const [frames, alerts, events] = await Promise.all([
    api(`/sites/${id}/frames?limit=8`), api(`/sites/${id}/alerts?limit=10`), api(`/sites/${id}/events?limit=10`)]);
  section.querySelector(".frames").replaceChildren(...frames.frames.map(frameFigure));
  const alertList = section.querySelector(".alerts");
  alertList.replaceChildren(...alerts.alerts.map(a => {
    const item = element("li", "alert", `${a.alerted.join(", ")} on ${a.camera_id} at ${a.capture_time}`);
    item.dataset.frameId = a.frame_id;
    return item;
  }));
  if (!alerts.alerts.length) alertList.append(element("li", "muted", "no alerts"));
  const eventList = section.querySelector(".events");
  eventList.replaceChildren(...events.events.map(e => element("li", "event", `${e.rule} (${e.severity}) on ${e.camera_id} at ${e.start_time}`)));
  if (!events.events.length) eventList.append(element("li", "muted", "no events"));
  return section;
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const { sites } = await api("/sites");
    const template = document.getElementById("site-template");
    const sections = await Promise.all(sites.map(site => renderSite(template, site)));
    document.getElementById("sites").replaceChildren(...sections);
    for (const [frameId, figure] of figures) if (!figure.isConnected) figures.delete(frameId);
    status.textContent = `${sites.length} sites · updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = "true";
  } catch (error) {
    if (state.token) status.textContent = `update failed: ${error.message}`;
  }
}

function signedIn() {
  document.getElementById("login").hidden = true;
  document.getElementById("refresh").hidden = false;
  document.getElementById("signout").hidden = false;
  refresh();
  clearInterval(state.timer);
  state.timer = setInterval(refresh, 15000);
}

function signOut(message) {
  state.token = "";
  sessionStorage.removeItem("fleet-token");
  clearInterval(state.timer);
  document.getElementById("sites").replaceChildren();
  document.getElementById("login").hidden = false;
  document.getElementById("refresh").hidden = true;
  document.getElementById("signout").hidden = true;
  document.getElementById("status").textContent = message;
}

document.addEventListener("DOMContentLoaded", async () => {
  takeTokenFromFragment();
  await loadConfig();
  document.getElementById("login").addEventListener("submit", event => {
    event.preventDefault();
    state.token = document.getElementById("token").value.trim();
    sessionStorage.setItem("fleet-token", state.token);
    signedIn();
  });
  document.getElementById("refresh").addEventListener("click", refresh);
  document.getElementById("signout").addEventListener("click", () => signOut("signed out"));
  window.addEventListener("hashchange", () => {
    const before = state.token;
    takeTokenFromFragment();
    if (state.token && state.token !== before) signedIn();
  });
  if (state.token) signedIn();
});
