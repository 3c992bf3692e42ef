"""Accuracy on faces FER2013 never showed the model: the posed photos of tw-posed
(``../shared/data/tw-posed``, 29 Taiwanese performers, 256 px colour, head and shoulders),
read as a client's upload is, by the service's own Analyzer: decode, YuNet, the largest
face cropped as the model's contract says, classified by the service's runtime with its
settings (FER_* variables; flip TTA on by default).

    python -m bench.cross_dataset models/emotion/6 [models/emotion/15 ...]
        [--data ../shared/data/tw-posed] [--write] [--crops runs/tw-posed-96.npz] [--fer]

Several versions are measured in one run, side by side. Reported, as issue #32 asks, on
all 1,232 photos (the posed label) and on the 977 the human raters agreed with:
accuracy, macro recall (the mean of the per-class recalls: the set is roughly balanced
but for neutral) and the recall of each class. A photo where no face is found counts as
wrong.

``--fer`` adds the `fer` library (``pip install --no-deps fer==25.10.3``, as
bench.compare_fer) as a user calls it: ``detect_emotions`` on the photo (its Haar
detector, then its model), the largest face.

``--write`` puts the figures into each version: ``eval/tw_posed.json`` and ``.md``,
``metrics.tw_posed`` in ``metadata.json`` (all photos) and a section of its model card.
``--crops`` saves the face crops (the model's input, uint8) with the labels, for
``python -m trainer adjust --also`` (offsets chosen on PublicTest and tw-posed together):
the trainer reads the crops, not the service's code.

tw-posed is a validation set: never trained on, and never the only set a choice is made on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.images import SHARED, read_manifest
from bench.pipeline import make_analyzer

SUBSETS = {"all": "all photos, posed label", "rater_agree": "the raters agreed with the pose"}


def run_model(model_dir: Path, data: Path, rows: list[dict], want_crops: bool = False):
    """The largest face's probabilities per photo (NaN where none is found) as the network
    gives them (calibration off), the labels of the model, the crops the model was given
    (with ``want_crops``), and the runtime."""
    from service.analyzer import Options
    from service.cropping import batch as crop_batch
    from service.imaging import decode

    analyzer = make_analyzer(model_dir, calibration=False)
    model = analyzer.models.current()
    labels = list(model.labels)
    probs = np.full((len(rows), len(labels)), np.nan, np.float32)
    size = model.contract.input_size
    crops = np.zeros((len(rows), size, size, 3), np.uint8) if want_crops else None
    opts = Options(max_faces=1, whole_if_no_face=False)
    for i, row in enumerate(rows):
        # Decoded as an upload is; then the Analyzer's own detect, crop and classify.
        img = decode(
            (data / row["path"]).read_bytes(), analyzer.max_pixels, analyzer.decode_max_side
        )
        found = analyzer.classify(img, opts, model)
        if found.faces:
            probs[i] = found.probs[0]
            if crops is not None:  # the crop the model was given, kept for the trainer
                crops[i] = crop_batch(img.gray, found.faces[:1], model.contract)[0]
    runtime = {"runtime": model.runtime, "precision": model.precision}
    return probs, labels, crops, runtime


def run_fer(data: Path, rows: list[dict], labels: list[str]) -> np.ndarray:
    """The `fer` library's scores of the largest face it finds in each photo (NaN: none)."""
    import cv2
    from fer.fer import FER

    lib = FER()  # its defaults: Haar cascade, the TFLite model
    probs = np.full((len(rows), len(labels)), np.nan, np.float32)
    for i, row in enumerate(rows):
        bgr = cv2.imread(str(data / row["path"]), cv2.IMREAD_COLOR)
        faces = lib.detect_emotions(bgr)
        if faces:
            best = max(faces, key=lambda f: f["box"][2] * f["box"][3])
            probs[i] = [best["emotions"][c] for c in labels]
    return probs


def scores(probs: np.ndarray, y: np.ndarray, labels: list[str]) -> dict:
    """Accuracy, macro recall and per-class recall; a photo without a face is wrong."""
    found = ~np.isnan(probs).any(axis=1)
    pred = np.where(found, np.nan_to_num(probs, nan=0.0).argmax(axis=1), -1)
    recall = {c: float((pred[y == k] == k).mean()) for k, c in enumerate(labels) if (y == k).any()}
    return {
        "images": int(len(y)),
        "no_face": int((~found).sum()),
        "accuracy": float((pred == y).mean()),
        "macro_recall": float(np.mean(list(recall.values()))),
        "recall": recall,
        "predicted": {c: int((pred == k).sum()) for k, c in enumerate(labels)},
    }


def evaluate(model_dir: Path, data: Path, rows: list[dict], want_crops: bool = False):
    probs, labels, crops, runtime = run_model(model_dir, data, rows, want_crops)
    res, y, agree = both_subsets(probs, rows, labels)
    res["calibration"] = calibration_scores(probs, y, _calibration(model_dir))
    return res, labels, runtime, (crops, y, agree)


def calibration_scores(probs: np.ndarray, y: np.ndarray, cal: dict | None) -> dict:
    """ECE, NLL and Brier of the photos with a face, before and (for a calibrated version)
    after its temperature, applied as the service applies it; with the reliability curves."""
    from service.model.calibration import temper
    from trainer import calibration

    found = ~np.isnan(probs).any(axis=1)
    p, y = probs[found], y[found]
    out = {"before": calibration.scores(p, y)}
    curves = {"before": calibration.reliability(p, y)}
    if cal:
        after = temper(p, cal["temperature"])
        out["after"] = calibration.scores(after, y) | calibration.covered(
            after, y, cal["uncertain_below"]
        )
        curves[f"after (T = {cal['temperature']:g})"] = calibration.reliability(after, y)
    return {**out, "curves": curves}


def _calibration(model_dir: Path) -> dict | None:
    return json.loads((model_dir / "metadata.json").read_text()).get("calibration")


def both_subsets(probs: np.ndarray, rows: list[dict], labels: list[str]):
    y = np.array([labels.index(r["label"]) for r in rows])
    agree = np.array([r["rater_agree"] == "True" for r in rows])
    res = {"all": scores(probs, y, labels), "rater_agree": scores(probs[agree], y[agree], labels)}
    return res, y, agree


def print_rows(name: str, res: dict, labels: list[str]) -> None:
    for subset, r in res.items():
        if subset == "calibration":
            continue
        recalls = " ".join(f"{r['recall'].get(c, float('nan')):>8.3f}" for c in labels)
        print(
            f"{name:40} {subset:12} {r['images']:>6} {r['no_face']:>7} {r['accuracy']:>8.4f} "
            f"{r['macro_recall']:>8.4f} {recalls}",
            flush=True,
        )


def print_calibration(cal: dict) -> None:
    for when in ("before", "after"):
        if when in cal:
            c = cal[when]
            print(
                f"{'':40} {when + ' calibration':24} ECE {c['ece']:.4f}  NLL {c['nll']:.4f}  "
                f"Brier {c['brier']:.4f}  mean confidence {c['mean_confidence']:.4f}"
                + (f"  not uncertain {c['coverage']:.1%}" if "coverage" in c else ""),
                flush=True,
            )


def write(model_dir: Path, res: dict, labels: list[str], settings: dict) -> None:
    """Figures into the version: eval/tw_posed.{json,md}, metadata and model card."""
    out = model_dir / "eval"
    out.mkdir(exist_ok=True)
    record = {"set": "tw-posed", "measured_with": "python -m bench.cross_dataset", **settings}
    cal = res["calibration"]
    scores = {k: v for k, v in cal.items() if k != "curves"}
    subsets = {k: v for k, v in res.items() if k != "calibration"}
    (out / "tw_posed.json").write_text(
        json.dumps({**record, **subsets, "calibration": scores}, indent=2) + "\n"
    )
    from trainer import figures, report

    figures.reliability(cal["curves"], out / "reliability_tw_posed.png", "tw-posed")
    table = markdown(subsets, labels)
    (out / "tw_posed.md").write_text(
        f"## tw-posed (faces FER2013 never showed it)\n\n{table}\n\n"
        f"{report.calibration_table({'tw-posed': scores})}\n\n"
        "![reliability](reliability_tw_posed.png)\n"
    )
    meta_file = model_dir / "metadata.json"
    meta = json.loads(meta_file.read_text())
    a = res["all"]
    meta.setdefault("metrics", {})["tw_posed"] = {
        "images": a["images"],
        "accuracy": round(a["accuracy"], 4),
        "macro_recall": round(a["macro_recall"], 4),
        "rater_agree_accuracy": round(res["rater_agree"]["accuracy"], 4),
        "rater_agree_macro_recall": round(res["rater_agree"]["macro_recall"], 4),
        "recall": {c: round(v, 4) for c, v in a["recall"].items()},
    }
    if "calibration" in meta and "after" in scores:
        meta["calibration"]["scores"]["tw_posed"] = scores
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
    card = model_dir / "MODEL_CARD.md"
    if card.is_file():
        head, sep, rest = card.read_text().partition("\n## Faces FER2013 never showed it\n")
        tail = rest.split("\n## ", 1)[1] if "\n## " in rest else ""
        section = (
            "\n## Faces FER2013 never showed it\n\n"
            "tw-posed (`../shared/data/tw-posed`: posed photos of 29 Taiwanese performers, "
            "colour, 256 px), each photo sent through the service's detection, largest face, "
            f"crop and runtime ({settings['runtime']} {settings['precision']}, flip TTA "
            f"{settings['flip_tta']}), with "
            "`python -m bench.cross_dataset`. A validation set: never trained on.\n\n"
            f"{table}\n"
        )
        text = head.rstrip() + "\n" + section + (f"\n## {tail}" if tail else "")
        if "calibration" in meta:
            text = report.with_calibration_section(text, meta["calibration"])
        card.write_text(text)


def markdown(res: dict, labels: list[str]) -> str:
    head = "| photos | images | no face | accuracy | macro recall | " + " | ".join(labels) + " |"
    rows = [head, "|" + "---|" * (5 + len(labels))]
    for subset, r in res.items():
        recalls = " | ".join(f"{r['recall'].get(c, float('nan')):.3f}" for c in labels)
        rows.append(
            f"| {SUBSETS[subset]} | {r['images']} | {r['no_face']} | {r['accuracy']:.4f} | "
            f"{r['macro_recall']:.4f} | {recalls} |"
        )
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model_dirs", type=Path, nargs="+", help="models/<name>/<version> folders")
    p.add_argument("--data", type=Path, default=SHARED / "data" / "tw-posed")
    p.add_argument("--write", action="store_true", help="write the figures into each version")
    p.add_argument("--crops", type=Path, help="save the first version's face crops (.npz)")
    p.add_argument("--fer", action="store_true", help="the `fer` library too, side by side")
    args = p.parse_args()
    if not (args.data / "manifest.csv").is_file():
        raise SystemExit(f"{args.data}: no manifest.csv (the tw-posed set, see ../shared)")
    from service.config import Settings

    settings = Settings.from_env()
    rows = read_manifest(args.data)
    print(f"{args.data}: {len(rows)} photos; runtime {settings.runtime}, flip TTA "
          f"{settings.flip_tta}, detector {settings.detector}")  # fmt: skip
    classes = " ".join(f"{c[:8]:>8}" for c in _labels(args.model_dirs[0]))
    print(f"{'model':40} {'photos':12} {'images':>6} {'no face':>7} {'accuracy':>8} "
          f"{'m.recall':>8} {classes}")  # fmt: skip
    for i, model_dir in enumerate(args.model_dirs):
        want = args.crops is not None and i == 0
        res, labels, runtime, (crops, y, agree) = evaluate(model_dir, args.data, rows, want)
        print_rows(f"{model_dir} ({runtime['runtime']} {runtime['precision']})", res, labels)
        print_calibration(res["calibration"])
        if args.write:
            write(model_dir, res, labels, {**runtime, "flip_tta": settings.flip_tta})
        if want:
            args.crops.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(
                args.crops, images=crops, labels=y, classes=np.array(labels), rater_agree=agree
            )
            print(f"wrote {args.crops}: {len(y)} face crops of {model_dir}'s input")
    if args.fer:
        labels = _labels(args.model_dirs[0])
        res, _, _ = both_subsets(run_fer(args.data, rows, labels), rows, labels)
        print_rows("fer 25.10.3 (Haar + TFLite)", res, labels)


def _labels(model_dir: Path) -> list[str]:
    return json.loads((model_dir / "labels.json").read_text())


if __name__ == "__main__":
    main()
