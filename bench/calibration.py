"""Calibration measured over HTTP: the served version's answers with its calibration and
without it (FER_CALIBRATION=false), side by side in one run.

Starts two services on 127.0.0.1 on the same model folder (scripts/serve.sh, one worker
each), sends every FER+ PrivateTest image to both as a client would (the file, detect=false:
it is a face crop already) and every tw-posed photo (detection on, its largest face), and
prints per set: accuracy, mean confidence, ECE (15 bins), NLL, Brier, how many wrong
answers came with a confidence of 0.9 or more, and the uncertain flag's coverage and the
accuracy of the faces it leaves. The probabilities are the answers' own, 4 decimals.

    python -m bench.calibration                      # models/emotion, both sets
    python -m bench.calibration --limit 500 --out runs/calibration.json
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

from bench.images import SHARED, read_manifest
from bench.machine import header
from bench.server import ROOT, serve
from trainer import calibration
from trainer.report import calibration_table


def privatetest(data: Path, labels: list[str]) -> list[tuple[Path, int]]:
    """FER+ PrivateTest: each image with a FER+ majority label, as the model card counts."""
    with (data / "ferplus.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["usage"] == "PrivateTest" and r["ferplus_label"]]
    return [(data / r["file"], labels.index(r["ferplus_label"])) for r in rows]


def tw_posed(data: Path, labels: list[str]) -> list[tuple[Path, int]]:
    return [(data / r["path"], labels.index(r["label"])) for r in read_manifest(data)]


def ask(url: str, path: Path, detect: bool, labels: list[str]) -> tuple[np.ndarray, bool | None]:
    """The largest face's probabilities (NaN: no face) and its uncertain flag."""
    params = {"detect": str(detect).lower(), "max_faces": "1"}
    r = requests.post(f"{url}/predict", params=params, data=path.read_bytes(), timeout=60,
                      headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    r.raise_for_status()
    faces = r.json()["faces"]
    if not faces:
        return np.full(len(labels), np.nan), None
    return np.array([faces[0]["probabilities"][k] for k in labels]), faces[0]["uncertain"]


def measure(urls: dict[str, str], items, detect: bool, labels: list[str]) -> dict:
    """Every item sent to every service (two client threads), then scored per service."""

    def one(item):
        return {name: ask(url, item[0], detect, labels) for name, url in urls.items()}

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(one, items))
    y = np.array([label for _, label in items])
    out = {}
    for name in urls:
        probs = np.stack([a[name][0] for a in answers])
        flags = [a[name][1] for a in answers]
        found = ~np.isnan(probs).any(axis=1)
        sc = calibration.scores(probs[found], y[found])
        if any(f is not None for f in np.array(flags, object)[found]):
            kept = np.array([f is False for f in flags])[found]
            right = probs[found].argmax(axis=1) == y[found]
            sc["coverage"] = round(float(kept.mean()), 4)
            sc["precision_above"] = round(float(right[kept].mean()), 4) if kept.any() else 0.0
        sc["no_face"] = int((~found).sum())
        out[name] = sc
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model-dir", type=Path, default=ROOT / "models" / "emotion")
    p.add_argument("--fer", type=Path, default=SHARED / "data" / "fer2013")
    p.add_argument("--tw-posed", type=Path, default=SHARED / "data" / "tw-posed")
    p.add_argument("--limit", type=int, default=0, help="at most this many images per set")
    p.add_argument("--out", type=Path, help="write the figures here (JSON)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as work, both_services(Path(work), args.model_dir) as urls:
        info = requests.get(urls["calibrated"] + "/v1/models", timeout=10).json()
        labels = info["labels"]
        print(header(info["precision"]) + f"; runtime {info['runtime']}")
        print(f"model {info['name']} {info['version']}, calibration {info['calibration']}")
        sets = {
            "FER+ PrivateTest (detect=false)": (privatetest(args.fer, labels), False),
            "tw-posed (detection, largest face)": (tw_posed(args.tw_posed, labels), True),
        }
        results = {}
        for name, (items, detect) in sets.items():
            items = items[:: max(1, len(items) // args.limit)] if args.limit else items
            print(f"{name}: {len(items)} images ...", flush=True)
            res = measure(urls, items, detect, labels)
            results[name] = {"before": res["network's"], "after": res["calibrated"]}
        print(calibration_table(results))
        for name, r in results.items():
            a = r["after"]
            if "coverage" in a:
                print(
                    f"{name}: the uncertain flag leaves {a['coverage']:.1%} of the faces, "
                    f"{a['precision_above']:.1%} of them right (all: {a['accuracy']:.1%})"
                )
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            record = {"model": info, "cpu": header(info["precision"]), "sets": results}
            args.out.write_text(json.dumps(record, indent=2) + "\n")


@contextlib.contextmanager
def both_services(work: Path, model_dir: Path):
    """Two services on ``model_dir``, with its calibration and without; URLs by name."""
    with contextlib.ExitStack() as stack:
        urls = {}
        for name, folder, on in (("calibrated", "on", "true"), ("network's", "off", "false")):
            url, _, _ = stack.enter_context(
                serve(
                    work / folder,
                    model_dir,
                    workers=1,
                    threads=2,
                    FER_CALIBRATION=on,
                    FER_WORKER_CLASS="gthread",
                )  # fmt: skip
            )
            urls[name] = url
        yield urls


if __name__ == "__main__":
    main()
