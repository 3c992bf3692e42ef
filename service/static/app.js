// The page uses the public API only (GET /ready, POST /predict, POST /predict/video in
// video.js): a living example.
"use strict";

const COLORS = {
  angry: "#d92d20", disgust: "#6b8e23", fear: "#7a5af8", happy: "#f79009",
  neutral: "#667085", sad: "#1570ef", surprise: "#ee46bc",
};
const MAX_FPS = 8;            // webcam: never faster than this...
const TIMELINE_SECONDS = 60;  // ...and one request in flight at most
const $ = (id) => document.getElementById(id);
const state = { result: null, selected: 0, running: false, stream: null, timeline: [],
                frames: 0, lastMs: 0, tracker: null };

function say(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

function apiKeyHeader() {
  const key = $("api-key").value || localStorage.getItem("fer-api-key") || "";
  return key ? { "X-API-Key": key } : {};
}

// POST /predict; resolves to the JSON result or throws an Error with the server's message.
async function predict(body, params, contentType) {
  const headers = { ...apiKeyHeader() };
  if (contentType) headers["Content-Type"] = contentType;
  const resp = await fetch(`predict?${new URLSearchParams(params)}`, { method: "POST", body, headers });
  let data = null;
  try { data = await resp.json(); } catch { /* not JSON: handled below */ }
  if (resp.ok) return data;
  if (resp.status === 401) {
    $("key-box").hidden = false;
    $("key-box").open = true;
  }
  const msg = data && data.error ? data.error.message : `HTTP ${resp.status}`;
  const friendly = {
    413: "This file is too large for the server.",
    415: "This file type is not supported: use JPEG, PNG, WebP, BMP, TIFF or GIF.",
    400: "The server could not read this image.",
    401: "The server needs an API key: enter it below.",
    503: "The model is still loading; try again in a few seconds.",
  }[resp.status];
  throw new Error(friendly ? `${friendly} (${msg})` : msg);
}

function drawResult(source, result) {
  const canvas = $("canvas");
  canvas.width = result.width;
  canvas.height = result.height;
  canvas.hidden = false;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(source, 0, 0, result.width, result.height);
  drawFaces(ctx, result.faces, result.width, result.height, state.selected);
}

// A face's label: track id, emotion, "?" when the answer is uncertain (its confidence is
// under the model's threshold), confidence.
function faceLabel(f) {
  const shown = f.smoothed || f;
  return `${f.track_id ? `#${f.track_id} ` : ""}${shown.emotion}${shown.uncertain ? "?" : ""} ` +
    `${(shown.confidence * 100).toFixed(0)}%`;
}

// Each face's box and label (track id, smoothed emotion where there is one), dashed when
// uncertain; the video tab draws its overlay with it too.
function drawFaces(ctx, faces, width, height, selected = -1) {
  const line = Math.max(2, Math.round(Math.max(width, height) / 300));
  ctx.font = `${6 * line + 6}px system-ui, sans-serif`;
  faces.forEach((f, i) => {
    const shown = f.smoothed || f, b = f.box, color = COLORS[shown.emotion] || "#12b76a";
    ctx.lineWidth = i === selected ? line * 2 : line;
    ctx.strokeStyle = color;
    ctx.setLineDash(shown.uncertain ? [4 * line, 3 * line] : []);
    ctx.strokeRect(b.x, b.y, b.width, b.height);
    ctx.setLineDash([]);
    const label = faceLabel(f);
    const w = ctx.measureText(label).width + 2 * line, h = 6 * line + 10;
    const y = b.y >= h ? b.y - h : b.y + b.height;
    ctx.fillStyle = color;
    ctx.fillRect(b.x, y, w, h);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, b.x + line, y + h - 4 - line);
  });
}

function showFaces(result) {
  const list = $("faces");
  list.replaceChildren(...result.faces.map((f, i) => {
    const li = document.createElement("li");
    const shown = f.smoothed || f;
    li.dataset.emotion = shown.emotion;
    li.dataset.uncertain = String(Boolean(shown.uncertain));
    if (f.track_id) li.dataset.track = String(f.track_id);
    li.textContent = `${faceLabel(f)} at ${f.box.x},${f.box.y}` +
      (shown.uncertain ? " (uncertain)" : "");
    li.className = i === state.selected ? "selected" : "";
    li.onclick = () => { state.selected = i; render(); };
    return li;
  }));
  const face = result.faces[state.selected];
  const probs = face ? (face.smoothed || face).probabilities : {};
  $("bars").replaceChildren(...Object.entries(probs).map(([k, p]) => {
    const row = document.createElement("div");
    row.className = "bar";
    row.dataset.emotion = k;
    row.innerHTML = `<span>${k}</span><span class="track"><span class="fill"></span></span>` +
                    `<span>${(p * 100).toFixed(1)}%</span>`;
    const fill = row.querySelector(".fill");
    fill.style.width = `${(p * 100).toFixed(1)}%`;
    fill.style.background = COLORS[k] || "#12b76a";
    return row;
  }));
}

function render() {
  if (!state.result) return;
  drawResult(state.source, state.result);
  showFaces(state.result);
}

function describe(result) {
  if (!result.faces.length) return "No face found in this photo.";
  if (result.whole_image) return "No face detected: the whole image was classified as one face.";
  const n = result.faces.length;
  return `${n} face${n > 1 ? "s" : ""} found in ${result.timings_ms.total.toFixed(0)} ms.`;
}

async function handleFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    say(`"${file.name}" is not an image.`, true);
    return;
  }
  say("Analysing…");
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);  // EXIF orientation applied, as on the server
  } catch {
    say(`"${file.name || "this file"}" is not an image the browser can read.`, true);
    return;
  }
  const form = new FormData();
  form.append("image", file, file.name || "pasted.png");
  try {
    const result = await predict(form, { top_k: 7 });
    Object.assign(state, { result, source: bitmap, selected: 0 });
    render();
    say(describe(result), !result.faces.length);
  } catch (err) {
    say(err.message, true);
  }
}

// ---- webcam: adaptive rate, one request in flight, a one-minute timeline ----

async function startCamera() {
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
  } catch (err) {
    const refused = err && (err.name === "NotAllowedError" || err.name === "SecurityError");
    say(refused ? "Camera access was refused: allow it in the browser to use webcam mode."
                : `No camera available (${err && err.name ? err.name : err}).`, true);
    return;
  }
  const video = $("video");
  video.srcObject = state.stream;
  await video.play();
  state.running = true;
  state.tracker = new FaceTracker();  // ids and smoothed labels across frames
  $("cam-start").disabled = true;
  $("cam-stop").disabled = false;
  say("Camera on.");
  loop();
}

function stopCamera() {
  state.running = false;
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  $("cam-start").disabled = false;
  $("cam-stop").disabled = true;
  say("Camera off.");
}

async function loop() {
  const video = $("video"), grab = document.createElement("canvas");
  while (state.running) {
    const t0 = performance.now();
    grab.width = video.videoWidth || 640;
    grab.height = video.videoHeight || 480;
    grab.getContext("2d").drawImage(video, 0, 0, grab.width, grab.height);
    const blob = await new Promise((ok) => grab.toBlob(ok, "image/jpeg", 0.85));
    try {
      const result = await predict(blob, { max_faces: 5, top_k: 7 }, "image/jpeg");
      if (!state.running) break;
      state.tracker.update(result.faces, performance.now() / 1000, result.uncertain_below);
      Object.assign(state, { result, source: grab, selected: 0 });
      render();
      record(result);
      say(result.faces.length ? "" : "No face in view.");
    } catch (err) {
      say(err.message, true);
      await new Promise((ok) => setTimeout(ok, 1000));  // back off after an error
    }
    state.lastMs = performance.now() - t0;
    const wait = Math.max(0, 1000 / MAX_FPS - state.lastMs);
    await new Promise((ok) => setTimeout(ok, wait));
  }
}

function record(result) {
  state.frames += 1;
  document.body.dataset.liveFrames = String(state.frames);
  const now = performance.now() / 1000, face = result.faces[0];
  const shown = face ? face.smoothed || face : null;
  state.timeline.push({ t: now, emotion: shown ? shown.emotion : null,
                        uncertain: Boolean(shown && shown.uncertain) });
  state.timeline = state.timeline.filter((s) => now - s.t <= TIMELINE_SECONDS);
  $("cam-stats").textContent =
    `${(1000 / Math.max(state.lastMs, 1000 / MAX_FPS)).toFixed(1)} frames/s, ${state.lastMs.toFixed(0)} ms per frame`;
  drawTimeline(now);
}

function drawTimeline(now) {
  const c = $("timeline"), ctx = c.getContext("2d");
  c.width = c.clientWidth || 600;
  ctx.clearRect(0, 0, c.width, c.height);
  const x = (t) => c.width * (1 - (now - t) / TIMELINE_SECONDS);
  state.timeline.forEach((s, i) => {
    const next = state.timeline[i + 1];
    ctx.fillStyle = s.emotion ? COLORS[s.emotion] : "#e4e7ec";
    ctx.globalAlpha = s.uncertain ? 0.35 : 1;  // uncertain stretches are pale
    ctx.fillRect(x(s.t), 4, Math.max(2, (next ? x(next.t) : c.width) - x(s.t)), c.height - 8);
    ctx.globalAlpha = 1;
  });
}

// ---- wiring ----

function showTab(name) {
  for (const tab of ["photo", "webcam", "video"]) {
    $(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
    $(`${tab}-panel`).hidden = tab !== name;
  }
  // The photo/webcam view and its face list belong to those two tabs only.
  document.querySelector(".stage").hidden = name === "video";
  if (name !== "webcam" && state.running) stopCamera();
}

async function checkReady() {
  try {
    const r = await fetch("ready");
    const body = await r.json();
    if (r.ok) {
      $("model-info").textContent = `model ${body.model} v${body.version} · detector ${body.detector}`;
      return;
    }
    $("model-info").textContent = body.error ? `model not available: ${body.error}` : "model loading…";
  } catch {
    $("model-info").textContent = "server unreachable";
  }
  setTimeout(checkReady, 3000);
}

function init() {
  $("legend").innerHTML = Object.entries(COLORS)
    .map(([k, c]) => `<span><i style="background:${c}"></i>${k}</span>`).join("");
  $("tab-photo").onclick = () => showTab("photo");
  $("tab-webcam").onclick = () => showTab("webcam");
  $("tab-video").onclick = () => showTab("video");
  $("file").onchange = (e) => handleFile(e.target.files[0]);
  const drop = $("drop");
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    handleFile(e.dataTransfer.files[0]);
  };
  document.onpaste = (e) => {
    const item = [...(e.clipboardData || {}).items || []].find((i) => i.kind === "file");
    if (item) handleFile(item.getAsFile());
  };
  $("api-key").onchange = (e) => localStorage.setItem("fer-api-key", e.target.value);
  $("cam-start").onclick = startCamera;
  $("cam-stop").onclick = stopCamera;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    $("cam-start").disabled = true;
    $("cam-stats").textContent = "This browser (or an http:// page not on localhost) has no camera access.";
  }
  checkReady();
}

init();
