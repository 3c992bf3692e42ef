// Track ids and smoothed labels for the webcam: POST /predict answers one frame at a time,
// so the page follows faces itself, the way service/video/tracking.py does for videos:
// boxes matched greedily to each track's predicted place, closest first, within 1.5 face
// widths (wider per missed frame) and a factor 2 in size; a track ends after 2 missed
// frames. Probabilities are averaged per track with a time constant of TAU seconds.
// service/video/tracking.py is the reference; this is a port for the browser (the page
// cannot call Python per frame), kept to the same rules except that a track here ends
// after 2 missed frames whatever the rate (a webcam's rate varies with the server's
// speed), where a video's track survives max(2, fps) frames, about a second.
"use strict";

class FaceTracker {
  constructor({ maxMissed = 2, gate = 1.5, tau = 1.0 } = {}) {
    Object.assign(this, { maxMissed, gate, tau, nextId: 1, tracks: [] });
  }

  // Adds track_id and smoothed ({emotion, confidence, uncertain, probabilities}) to each
  // face; uncertain: the smoothed confidence is under the answer's threshold (null: none).
  update(faces, t, uncertainBelow = null) {
    this.below = uncertainBelow;
    const pairs = [];
    this.tracks.forEach((tr, ti) => faces.forEach((f, fi) => {
      const side = Math.sqrt(tr.box.width * tr.box.height);
      const ratio = Math.sqrt(f.box.width * f.box.height) / side;
      if (ratio < 0.5 || ratio > 2) return;
      const [px, py] = [tr.cx + tr.vx * (t - tr.t), tr.cy + tr.vy * (t - tr.t)];
      const [cx, cy] = centre(f.box);
      const dist = Math.hypot(cx - px, cy - py) / side;
      if (dist <= this.gate * (1 + tr.missed)) pairs.push([dist, ti, fi]);
    }));
    pairs.sort((a, b) => a[0] - b[0]);
    const usedT = new Set(), usedF = new Set();
    for (const [, ti, fi] of pairs) {
      if (usedT.has(ti) || usedF.has(fi)) continue;
      usedT.add(ti); usedF.add(fi);
      this.follow(this.tracks[ti], faces[fi], t);
    }
    this.tracks.forEach((tr, ti) => { if (!usedT.has(ti)) tr.missed += 1; });
    this.tracks = this.tracks.filter((tr) => tr.missed <= this.maxMissed);
    faces.forEach((f, fi) => { if (!usedF.has(fi)) this.start(f, t); });
    return faces;
  }

  follow(tr, face, t) {
    const [cx, cy] = centre(face.box), dt = t - tr.t;
    if (dt > 0) {
      const k = tr.hits > 1 ? 0.5 : 1;
      tr.vx = (1 - k) * tr.vx + k * (cx - tr.cx) / dt;
      tr.vy = (1 - k) * tr.vy + k * (cy - tr.cy) / dt;
      const w = 1 - Math.exp(-dt / this.tau);
      for (const [k2, p] of Object.entries(face.probabilities)) {
        tr.probs[k2] = (tr.probs[k2] ?? p) + w * (p - (tr.probs[k2] ?? p));
      }
    }
    Object.assign(tr, { box: face.box, cx, cy, t, missed: 0, hits: tr.hits + 1 });
    this.label(tr, face);
  }

  start(face, t) {
    const [cx, cy] = centre(face.box);
    const tr = { id: this.nextId++, box: face.box, cx, cy, vx: 0, vy: 0, t, missed: 0, hits: 1,
                 probs: { ...face.probabilities } };
    this.tracks.push(tr);
    this.label(tr, face);
  }

  label(tr, face) {
    const [emotion, confidence] = Object.entries(tr.probs).reduce((a, b) => (b[1] > a[1] ? b : a));
    face.track_id = tr.id;
    // As the service compares: the confidence to 4 decimals (service/model/calibration.py).
    const uncertain = this.below == null ? null : Math.round(confidence * 1e4) / 1e4 < this.below;
    face.smoothed = { emotion, confidence, uncertain, probabilities: { ...tr.probs } };
  }
}

function centre(b) { return [b.x + b.width / 2, b.y + b.height / 2]; }
