// The pgan search page: plain JavaScript, no build step, no external resources.
"use strict";

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("pgan-token") || "";
let thumbSize = 256;
let view = "matches";  // or "sightings": the same answer grouped by camera in time order
let shown = null;  // the answer on the page: {data, srcs (image id -> thumbnail URL)}
const objectURLs = [];

function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = !message;
}

function setStatus(message) { $("status").textContent = message; }

// fetch() an API path with the bearer token; throws Error(<the server's one-line message>) on failure.
async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (token) headers.set("Authorization", "Bearer " + token);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (err) {
    throw new Error("the server cannot be reached (" + err.message + ")");
  }
  if (response.status === 401) $("token-row").hidden = false;
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

// Image URLs go through fetch() so that the token is sent; the page shows blob: URLs.
async function galleryImage(id) {
  const blob = await (await api(`/api/images/${id}?size=${thumbSize}`)).blob();
  const url = URL.createObjectURL(blob);
  objectURLs.push(url);
  return url;
}

function releaseImages() {
  while (objectURLs.length) URL.revokeObjectURL(objectURLs.pop());
}

// An image with its part boxes drawn over it (boxes are in original pixels; drawn in percent).
function frame(src, width, height, boxes) {
  const div = document.createElement("div");
  div.className = "frame";
  const img = document.createElement("img");
  img.alt = "";
  img.src = src;
  div.appendChild(img);
  if (width && height) {
    for (const b of boxes || []) {
      const box = document.createElement("span");
      box.className = "box";
      box.title = `${b.label} (${b.score.toFixed(2)})`;
      box.style.left = (100 * b.x1 / width) + "%";
      box.style.top = (100 * b.y1 / height) + "%";
      box.style.width = (100 * (b.x2 - b.x1) / width) + "%";
      box.style.height = (100 * (b.y2 - b.y1) / height) + "%";
      div.appendChild(box);
    }
  }
  return div;
}

function caption(lines) {
  const fc = document.createElement("figcaption");
  for (const [cls, text] of lines) {
    const line = document.createElement("div");
    if (cls) line.className = cls;
    line.textContent = text;
    fc.appendChild(line);
  }
  return fc;
}

// A result's card: its image with part boxes and caption lines; clicking it searches with it.
function resultCard(r, src, lines) {
  const card = document.createElement("figure");
  card.className = "card result";
  card.tabIndex = 0;
  card.dataset.rank = r.rank;
  card.dataset.imageId = r.image_id;
  card.dataset.vehicleId = r.vehicle_id ?? "";
  card.title = `${r.name}: click to search with this image`;
  card.appendChild(frame(src, r.width, r.height, r.boxes));
  card.appendChild(caption(lines));
  const go = () => searchById(r.image_id);
  card.addEventListener("click", go);
  card.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
  return card;
}

function renderMatches(data, srcs) {
  $("results").replaceChildren(...data.results.map((r) => resultCard(r, srcs.get(r.image_id), [
    ["score", `#${r.rank}  score ${r.score.toFixed(3)}`],
    [null, `vehicle ${r.vehicle_id ?? "?"} · camera ${r.camera ?? "?"}`], ["muted small", r.name]])));
  return `${data.results.length} matches`;
}

// Per camera (best score first), a row of its likely matches in time order: where and when.
function renderSightings(data, srcs) {
  const s = data.sightings;
  const rows = s.cameras.map((cam) => {
    const section = document.createElement("section");
    section.className = "camera";
    section.dataset.camera = cam.camera ?? "";
    const title = document.createElement("h3");
    const span = cam.first_seen === null ? "time unknown"
      : cam.first_seen === cam.last_seen ? `at ${cam.first_seen}` : `${cam.first_seen} → ${cam.last_seen}`;
    const detail = document.createElement("span");
    detail.className = "muted small";
    detail.textContent = ` ${cam.count} sighting${cam.count === 1 ? "" : "s"} · ${span} · ` +
      `best score ${cam.best_score.toFixed(3)}`;
    title.append(cam.camera === null ? "camera unknown" : `camera ${cam.camera}`, detail);
    const line = document.createElement("ol");
    line.className = "timeline";
    for (const r of cam.results) {
      const item = document.createElement("li");
      item.appendChild(resultCard(r, srcs.get(r.image_id), [
        ["time", r.timestamp ?? "time unknown"],
        ["score", `score ${r.score.toFixed(3)}  #${r.rank}`],
        ["muted small", r.image_id === data.query.image_id ? "the query" : `vehicle ${r.vehicle_id ?? "?"}`]]));
      line.appendChild(item);
    }
    section.append(title, line);
    return section;
  });
  const note = document.createElement("p");
  note.className = "muted small";
  note.textContent = s.below_min_score === 0 ? `every match scored at least ${s.min_score}`
    : `${s.below_min_score} of ${data.results.length} matches scored under ${s.min_score} and are not shown`;
  $("sightings").replaceChildren(note, ...rows);
  const total = s.cameras.reduce((n, c) => n + c.count, 0);
  return `${total} sightings on ${s.cameras.length} camera${s.cameras.length === 1 ? "" : "s"}`;
}

function showView() {
  const sightings = view === "sightings";
  $("view-matches").setAttribute("aria-pressed", String(!sightings));
  $("view-sightings").setAttribute("aria-pressed", String(sightings));
  $("results").hidden = sightings;
  $("sightings").hidden = !sightings;
  if (shown) setStatus(sightings ? renderSightings(shown.data, shown.srcs) : renderMatches(shown.data, shown.srcs));
}

async function renderResults(data, querySrc) {
  const q = $("query");
  q.replaceChildren(frame(querySrc, data.query.width, data.query.height, data.query.boxes),
    caption([[null, data.query.image_id === null ? "uploaded photo" : `gallery image ${data.query.image_id}`],
             ["muted", `${data.query.boxes.length} part boxes · ${data.took_ms.toFixed(0)} ms`]]));
  const urls = await Promise.all(data.results.map((r) => galleryImage(r.image_id)));
  shown = { data, srcs: new Map(data.results.map((r, i) => [r.image_id, urls[i]])) };
  showView();
  $("output").hidden = false;
}

async function runSearch(form, querySrc) {
  showError("");
  setStatus("searching…");
  form.append("topk", $("topk").value || "");
  if ($("camera").value !== "") form.append("camera", $("camera").value);
  form.append("group", "camera");  // the answer carries both views; the toggle switches without a new search
  if ($("min-score").value !== "") form.append("min_score", $("min-score").value);
  try {
    const data = await (await api("/api/search", { method: "POST", body: form })).json();
    releaseImages();
    const src = typeof querySrc === "function" ? await querySrc() : querySrc;
    await renderResults(data, src);
  } catch (err) {
    setStatus("");
    showError(err.message);
  }
}

function searchFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    showError(`${file.name} is not an image (${file.type})`);
    return;
  }
  const form = new FormData();
  form.append("image", file, file.name);
  runSearch(form, () => { const u = URL.createObjectURL(file); objectURLs.push(u); return u; });
}

function searchById(id) {
  $("gallery-id").value = String(id);
  const form = new FormData();
  form.append("image_id", String(id));
  runSearch(form, () => galleryImage(id));
}

// "42", "/api/images/42" or "http://host:8000/api/images/42?size=256" -> 42; anything else -> null.
function parseGalleryId(text) {
  text = text.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const m = text.match(/\/api\/images\/(\d+)(?:[?#].*)?$/);
  return m ? Number(m[1]) : null;
}

async function loadInfo() {
  try {
    const info = await (await api("/api/info")).json();
    $("topk").max = info.limits.max_topk;
    $("topk").value = info.limits.default_topk;
    thumbSize = Math.min(256, info.limits.max_thumbnail);
    $("info").textContent = `gallery of ${info.gallery_size} images · ${info.index_type} index · ` +
      `${info.embedding_dim}-d embeddings · model ${info.model_fingerprint.slice(0, 12)} (${info.checkpoint})`;
    $("token-row").hidden = true;
  } catch (err) {
    $("info").textContent = "";
    showError(err.message);
  }
}

function wire() {
  const drop = $("drop");
  drop.addEventListener("click", (e) => { if (!e.target.closest("label")) $("file").click(); });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) searchFile(file); else showError("drop an image file (a link or text is not a photo)");
  });
  $("file").addEventListener("change", (e) => { searchFile(e.target.files[0]); e.target.value = ""; });
  $("by-id").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = parseGalleryId($("gallery-id").value);
    if (id === null) showError("enter a gallery image id (a number) or an /api/images/<id> URL");
    else searchById(id);
  });
  for (const name of ["matches", "sightings"]) {
    $(`view-${name}`).addEventListener("click", () => { view = name; showView(); });
  }
  $("token-row").addEventListener("submit", (e) => {
    e.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem("pgan-token", token);
    showError("");
    loadInfo();
  });
  loadInfo();
}

wire();
