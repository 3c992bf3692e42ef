// The Video tab: POST /predict/video?stream=true, read the NDJSON lines as they come
// (progress), then draw each face's box, track id and emotion over the clip in step with
// playback, and one timeline row per track. Uses COLORS, say and apiKeyHeader (app.js).
"use strict";

const vstate = { header: null, frames: [], tracks: [], done: false, url: null, fps: 4 };

async function* ndjsonLines(resp) {
  const reader = resp.body.getReader(), decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim()) yield JSON.parse(line);
    }
  }
  if (buf.trim()) yield JSON.parse(buf);
}

async function analyseVideo(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("video/")) {
    say(`"${file.name}" is not a video.`, true);
    return;
  }
  const clip = $("clip");
  if (vstate.url) URL.revokeObjectURL(vstate.url);
  vstate.url = URL.createObjectURL(file);
  clip.src = vstate.url;
  $("clip-box").hidden = false;
  Object.assign(vstate, { header: null, frames: [], tracks: [], done: false });
  vstate.fps = Number($("video-fps").value) || 4;
  document.body.dataset.videoFrames = "0";
  $("track-list").replaceChildren();
  const params = { stream: "true", fps: vstate.fps, top_k: 3 };
  if ($("video-smooth").checked) params.smoothing = 1;
  const form = new FormData();
  form.append("video", file, file.name || "clip");
  say("Uploading…");
  let resp;
  try {
    resp = await fetch(`predict/video?${new URLSearchParams(params)}`,
                       { method: "POST", body: form, headers: apiKeyHeader() });
  } catch (err) {
    say(`The server could not be reached (${err.message}).`, true);
    return;
  }
  if (!resp.ok) {
    let data = null;
    try { data = await resp.json(); } catch { /* not JSON */ }
    if (resp.status === 401) { $("key-box").hidden = false; $("key-box").open = true; }
    say(data && data.error ? data.error.message : `HTTP ${resp.status}`, true);
    return;
  }
  for await (const line of ndjsonLines(resp)) onLine(line);
}

function onLine(line) {
  if (line.type === "video") {
    vstate.header = line;
    $("video-progress").max = line.frames_expected || 1;
    $("video-progress").hidden = false;
  } else if (line.type === "frame") {
    vstate.frames.push(line);
    document.body.dataset.videoFrames = String(vstate.frames.length);
    $("video-progress").value = vstate.frames.length;
    const n = vstate.header && vstate.header.frames_expected;
    say(`Analysed ${vstate.frames.length}${n ? ` of ${n}` : ""} frames…`);
    drawOverlay();
  } else if (line.type === "summary") {
    Object.assign(vstate, { tracks: line.tracks, done: true });
    $("video-progress").hidden = true;
    document.body.dataset.videoDone = "true";
    const t = line.tracks.length;
    say(`${line.frames_analysed} frames analysed, ${t} ${t === 1 ? "person" : "people"} tracked` +
        `${line.truncated ? " (the file ends early: truncated?)" : ""}. Play the clip.`);
    listTracks();
    drawChart();
  } else if (line.type === "error") {
    say(line.error.message, true);
  }
}

// The analysed frame shown at playback time t: the last one at or before t, if recent.
function frameAt(t) {
  const f = vstate.frames;
  let lo = 0, hi = f.length - 1, best = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (f[mid].time <= t + 1e-3) { best = mid; lo = mid + 1; } else { hi = mid - 1; }
  }
  return best >= 0 && t - f[best].time <= 1.5 / vstate.fps ? f[best] : null;
}

function drawOverlay() {
  const clip = $("clip"), canvas = $("clip-overlay");
  if (!clip.videoWidth) return;
  canvas.width = clip.videoWidth;
  canvas.height = clip.videoHeight;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const frame = frameAt(clip.currentTime);
  if (frame) drawFaces(ctx, frame.faces, canvas.width, canvas.height);
  drawChart();
}

function listTracks() {
  $("track-list").replaceChildren(...vstate.tracks.map((t) => {
    const li = document.createElement("li");
    li.dataset.track = String(t.track_id);
    li.dataset.emotion = t.dominant_emotion;
    li.textContent = `#${t.track_id}: mostly ${t.dominant_emotion}, ` +
      `${t.first_time.toFixed(1)}–${t.last_time.toFixed(1)} s (${t.frames} frames)`;
    li.onclick = () => { $("clip").currentTime = t.first_time; };
    return li;
  }));
}

// One row per track: its emotion timeline as coloured spans, and a playback cursor.
function drawChart() {
  const c = $("tracks-chart"), h = vstate.header;
  if (!h) return;
  const row = 16, left = 34, rows = Math.max(1, vstate.tracks.length);
  c.width = c.clientWidth || 600;
  c.height = rows * row + 6;
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  const t0 = h.window.start, t1 = h.window.end || h.video.duration ||
    (vstate.frames.length ? vstate.frames[vstate.frames.length - 1].time : 1);
  const x = (t) => left + (c.width - left - 2) * (t - t0) / Math.max(1e-6, t1 - t0);
  ctx.font = "11px system-ui, sans-serif";
  vstate.tracks.forEach((t, i) => {
    const y = 3 + i * row;
    ctx.fillStyle = "#667085";
    ctx.fillText(`#${t.track_id}`, 2, y + row - 4);
    t.timeline.forEach((s) => {
      ctx.fillStyle = COLORS[s.emotion] || "#12b76a";
      ctx.globalAlpha = s.uncertain ? 0.35 : 1;  // uncertain stretches are pale
      ctx.fillRect(x(s.start), y + 2, Math.max(2, x(s.end) - x(s.start)), row - 4);
      ctx.globalAlpha = 1;
    });
  });
  ctx.fillStyle = "#1d2330";
  ctx.fillRect(x($("clip").currentTime) - 1, 0, 2, c.height);
}

function seekFromChart(e) {
  const c = $("tracks-chart"), h = vstate.header;
  if (!h || !vstate.done) return;
  const t0 = h.window.start, t1 = h.window.end || h.video.duration || 1;
  const frac = (e.offsetX - 34) / Math.max(1, c.clientWidth - 36);
  $("clip").currentTime = Math.max(0, t0 + frac * (t1 - t0));
}

function followPlayback() {
  const clip = $("clip");
  const tick = () => {
    drawOverlay();
    if (clip.requestVideoFrameCallback) clip.requestVideoFrameCallback(tick);
    else if (!clip.paused) requestAnimationFrame(tick);
  };
  clip.addEventListener("loadedmetadata", drawOverlay);
  clip.addEventListener("seeked", drawOverlay);
  clip.addEventListener("play", () => { if (!clip.requestVideoFrameCallback) tick(); });
  if (clip.requestVideoFrameCallback) clip.requestVideoFrameCallback(tick);
}

function initVideo() {
  $("video-legend").innerHTML = $("legend").innerHTML;  // filled by app.js
  $("video-file").onchange = (e) => analyseVideo(e.target.files[0]);
  $("tracks-chart").onclick = seekFromChart;
  followPlayback();
}

initVideo();
