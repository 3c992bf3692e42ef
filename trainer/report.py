"""MODEL_CARD.md: what a user should know before trusting the model.

Written from the export's contract: its typed fields, and its details (training, data,
metrics) as the metadata holds them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainer.contract import ModelContract
from trainer.evaluate import markdown_table


def _metrics_section(contract: ModelContract) -> str:
    parts = []
    for name, res in contract.metrics.items():
        parts.append(
            f"### {name} split ({res['images']} images)\n\n"
            f"Accuracy **{res['accuracy']:.4f}**, macro F1 **{res['macro_f1']:.4f}**."
            f"\n\n{markdown_table(res, list(contract.labels))}\n\n"
            f"![confusion matrix](confusion_{name}.png)\n"
        )
    return "\n".join(parts) or "No evaluation was run.\n"


# The scores of trainer.calibration.scores a table shows, and their headings.
_CAL_COLUMNS = [
    ("accuracy", "accuracy"),
    ("mean_confidence", "mean confidence"),
    ("ece", "ECE (15 bins)"),
    ("nll", "NLL"),
    ("brier", "Brier"),
    ("wrong_at_0.9", "wrong answers at >= 0.9"),
]


def calibration_table(by_set: Mapping[str, Any]) -> str:
    """Before/after calibration scores as a Markdown table: ``by_set`` maps a set's name to
    ``{"before": scores, "after": scores}`` (``after`` absent: uncalibrated), or is one
    such mapping."""
    if "before" in by_set:
        by_set = {"": by_set}
    lines = ["| set | probabilities | " + " | ".join(h for _, h in _CAL_COLUMNS) + " | images |"]
    lines.append("|---" * (len(_CAL_COLUMNS) + 3) + "|")
    for name, ba in by_set.items():
        for when in ("before", "after"):
            if when in ba:
                sc = ba[when]
                cells = " | ".join(f"{sc[k]:.4f}" for k, _ in _CAL_COLUMNS)
                label = "calibrated" if when == "after" else "network's"
                lines.append(f"| {name} | {label} | {cells} | {sc['images']} |")
    return "\n".join(lines)


def calibration_section(cal: Mapping[str, Any]) -> str:
    """The card's calibration section, from the contract's ``calibration``."""
    fit = cal["fitted_on"]
    scores = cal["scores"]
    figures = " ".join(
        f"![reliability, {k}]({'eval/' if k == 'tw_posed' else ''}reliability_{k}.png)"
        for k in scores
    )
    return (
        "## Calibration\n\n"
        "The service answers calibrated probabilities: the flip-TTA mean of each face's "
        f"probabilities, tempered as `softmax(log(p) / T)` with **T = {cal['temperature']:g}**, "
        f"fitted by negative log-likelihood on the {fit['split']} split ({fit['images']} "
        f"images, flip TTA {'on' if fit['flip_tta'] else 'off'}). Temperature scaling "
        "changes no answer, only how sure each answer says it is. A face whose calibrated "
        f"top probability is below **{cal['uncertain_below']:g}** is flagged `uncertain`: "
        "the lowest confidence at which the answers at or above it were at least 95% right "
        f"on that split. It leaves {cal['coverage']:.1%} of those faces unflagged "
        f"({cal['precision_above']:.1%} of them right).\n\n"
        f"{calibration_table(scores)}\n\n{figures}{_tw_posed_calibration(cal)}\n"
    )


def _tw_posed_calibration(cal: Mapping[str, Any]) -> str:
    """What the temperature does on faces unlike FER2013, from the tw-posed scores."""
    tw = cal["scores"].get("tw_posed")
    if not tw or "after" not in tw:
        return ""
    before, after, t = tw["before"], tw["after"], cal["temperature"]
    verdict = (
        "it helps there too"
        if after["ece"] < before["ece"]
        else "it makes confidences there worse, not better: a temperature fitted on "
        "FER2013 cannot know that this network is "
        + ("over" if before["mean_confidence"] > before["accuracy"] else "under")
        + "-confident on faces unlike FER2013"
    )
    return (
        f"\n\nOn tw-posed (posed photos of 29 other people, through detection) the ECE goes "
        f"from {before['ece']:.3f} to {after['ece']:.3f} with T = {t:g} "
        f"({'sharper' if t < 1 else 'softer'} than the network): {verdict}. The uncertain "
        f"flag still sorts its answers there: {after.get('coverage', 0):.1%} of the photos "
        f"are not flagged, {after.get('precision_above', 0):.1%} of them right, against "
        f"{after['accuracy']:.1%} of all."
    )


def with_calibration_section(card: str, cal: Mapping[str, Any]) -> str:
    """``card`` with its calibration section replaced, or put before "## Limits"."""
    section = calibration_section(cal)
    head, sep, rest = card.partition("\n## Calibration\n")
    if sep:
        _, nxt, tail = rest.partition("\n## ")
        return head.rstrip() + "\n\n" + section + (f"\n## {tail}" if nxt else "")
    head, sep, rest = card.partition("\n## Limits\n")
    if sep:
        return head.rstrip() + "\n\n" + section + "\n## Limits\n" + rest
    return card.rstrip() + "\n\n" + section


def _speed(history: list[dict], stage: int) -> str:
    v = [h["images_per_second"] for h in history if h["stage"] == stage]
    return f"{sum(v) / len(v):.0f}" if v else "n/a"


def _init_section(meta: Mapping[str, Any]) -> str:
    init = meta.get("init")
    if not init:
        return ""
    t = init.get("training", {})
    total = (meta.get("train_seconds", 0) + init["total_train_seconds"]) / 60
    return (
        f"\nWarm restart: training started from the weights of `{init['folder']}` "
        f"({init['name']} version {init['version']}: recipe `{t.get('recipe')}`, "
        f"{t.get('stage1_epochs')} + {t.get('stage2_epochs')} epochs from "
        f"`{Path(str(t.get('base_weights', ''))).name}`, {init['train_seconds'] / 60:.0f} min), "
        f"not from ImageNet; the stages below continue it. Training time of the whole "
        f"lineage: {total:.0f} min (epochs only).\n"
    )


def _appearance(t: dict) -> str:
    """The appearance augmentation a run used (none for runs older than the options)."""
    names = {
        "brightness": "brightness +-{}",
        "contrast": "contrast +-{}",
        "gamma": "gamma up to {}",
        "blur": "blur p {}",
        "low_res": "low resolution p {}",
        "noise": "noise std up to {}",
    }
    on = [text.format(t[k]) for k, text in names.items() if t.get(k)]
    return (", " + ", ".join(on)) if on else ""


def _distill_section(meta: Mapping[str, Any]) -> str:
    d = meta.get("distillation")
    if not d:
        return ""
    teachers = _teachers(d)
    lines = "\n".join(f"- {_teacher_line(t, d)}" for t in teachers)
    tta = "each averaged with its mirror image" if d["teacher_tta"] else "without the mirror"
    parts = " + ".join(f"{t['weight']:g} x teacher {i}" for i, t in enumerate(teachers, 1))
    label_weight = d.get("label_weight", 1 - sum(t["weight"] for t in teachers))
    return f"""
## Distillation

Trained by `python -m trainer distill` on the outputs of {len(teachers)} teacher(s):

{lines}

Training targets: {label_weight:g} x the labels + {parts}, the teachers' probabilities
softened at temperature {d["temperature"]:g} (p ** (1/T), renormalised), {tta};
validation and test targets are the labels.
"""


def _teachers(d: Mapping[str, Any]) -> list[dict]:
    """The teachers of a distillation block; cards of versions distilled when distill took
    one teacher keep it, and its mode and runtime, beside the mix."""
    if "teachers" in d:
        return list(d["teachers"])
    t = dict(d["teacher"], weight=d["weight"], mode=d.get("mode", "cached"))
    if t["mode"] == "online":
        t.update(view=d.get("view", "augmented"), runtime=d["teacher_runtime"])
    else:
        t.update(seconds=d.get("teacher_seconds", 0), train_agreement=d["teacher_train_agreement"])
    return [t]


def _teacher_line(t: Mapping[str, Any], d: Mapping[str, Any]) -> str:
    figures = "; ".join(
        f"{split} accuracy {m['accuracy']:.4f}, macro F1 {m['macro_f1']:.4f}"
        for split, m in t.get("metrics", {}).items()
    )
    if "file" in t:  # an ONNX model on aligned faces (trainer/distillation/face_teacher.py)
        what = (
            f"`{t['file']}` (ONNX, sha256 {t['sha256']}, faces aligned on the landmarks of "
            f"`{Path(t['aligned_by']).name}`, found in {t['found_by_yunet']:.1%} of the "
            f"training images; on FER2013's held-out splits, averaged with the mirror: "
            f"{figures or 'not measured'})"
        )
    else:
        what = (
            f"`{t['folder']}` ({t['name']} version {t['version']}; its export's figures, "
            f"without flip TTA: {figures or 'none recorded'})"
        )
    return f"{what}, weight {t['weight']:g}, {_teacher_run(t)}"


def _teacher_run(t: Mapping[str, Any]) -> str:
    """How a teacher was run: online on each batch, or once per image."""
    if t["mode"] == "online":
        rt = t["runtime"]
        runtime = f"{rt['name']} {rt['version']}, {rt['precision']}"
        if t.get("view") == "framed":
            return (
                f"run on every training batch as framed (the augmentation's flip, rotation, "
                f"shift, shear and zoom), before the appearance changes and erasing the "
                f"student was fed (teacher mode `online`, view `framed`: {runtime})"
            )
        return (
            f"run on every augmented training batch, on the very images the student was "
            f"fed (teacher mode `online`: {runtime})"
        )
    where = f", cached in `{t['cache']}`" if t.get("cache") else ""
    seconds = f" ({t['seconds']:.0f} s)" if t.get("seconds") else ""
    return (
        f"computed once per training image, unaugmented{seconds}{where}; it agrees with the "
        f"training labels' argmax on {t['train_agreement']:.1%} of the training images"
    )


def adjustment_summary(adjustment: Mapping[str, Any]) -> str:
    """What a prior adjustment changes, in Markdown: the card's and ``adjust``'s output."""
    v, gain = adjustment["validation"], adjustment["held_out_gain"]
    offsets = "\n".join(
        f"| {c} | {b:+.2f} | {math.exp(b):.3f} |" for c, b in adjustment["offsets"].items()
    )
    return f"""Validation split ({v["images"]} images), flip TTA:

| | before | after |
|---|---|---|
| accuracy | {v["accuracy_before"]:.4f} | {v["accuracy_after"]:.4f} |
| macro F1 | {v["macro_f1_before"]:.4f} | {v["macro_f1_after"]:.4f} |

| class | offset b | weight exp(b) |
|---|---|---|
{offsets}

{_held_out(adjustment["objective"], gain)}
{_also(adjustment.get("also"))}"""


def _also(also: Mapping[str, Any] | None) -> str:
    if not also:
        return ""
    b, a = also["before"], also["after"]
    return f"""
Chosen on the validation split and, at weight {also["weight"]:g} of the objective, on
`{also["crops"]}` ({also["images"]} face crops from a set FER2013 never showed, cut by the
service's detection: `python -m bench.cross_dataset --crops`), flip TTA:

| | before | after |
|---|---|---|
| accuracy | {b["accuracy"]:.4f} | {a["accuracy"]:.4f} |
| macro recall | {b["macro_recall"]:.4f} | {a["macro_recall"]:.4f} |
"""


def _held_out(objective: str, gain: Mapping[str, Any]) -> str:
    return (
        f"Held-out gain in {objective}: {gain['mean']:+.4f} (sd {gain['sd']:.4f}; "
        f"{gain['splits']} tunings, each on a random half of the validation split and "
        "measured on the other half)."
    )


def _adjustment_section(meta: Mapping[str, Any]) -> str:
    a = meta.get("adjustment")
    if not a:
        return ""
    src = a["source"]
    return f"""
## Prior adjustment

Made by `python -m trainer adjust` from `{src["folder"]}` (version {src["version"]}, code
revision `{src["code_revision"]}`): the same network, whose data, recipe and training are
described above, with its probabilities multiplied by exp(b), one offset b per class, and
renormalised inside the signature (a post-hoc prior or logit adjustment: Menon et al.,
2021; Saerens et al., 2002). The offsets were chosen to maximise {a["objective"]} on the
{_tuned_on(a)}, with flip TTA as the service runs it; the test split played no part in
choosing them.

{adjustment_summary(a)}"""


def _exported_epoch(meta: Mapping[str, Any]) -> str:
    keep = meta.get("training", {}).get("keep", "best")
    epoch = meta.get("exported_epoch", meta.get("best_epoch"))
    return f"{epoch} (--keep {keep})"


def _tuned_on(a: Mapping[str, Any]) -> str:
    also = a.get("also")
    if not also:
        return "validation split only"
    return (
        f"validation split ({1 - also['weight']:g} of the objective) and the face crops "
        f"of `{also['crops']}` ({also['weight']:g})"
    )


def _contract(contract: ModelContract) -> str:
    pre = contract.preprocessing
    return f"""## Contract

- Input: uint8 `{contract.input.shape}`, gray face repeated to 3 channels
  (`{pre.color}`), resized with OpenCV {pre.resize_shrink} / {pre.resize_enlarge};
  scaling is inside the model.
- Face crop: detector box made square and scaled by {contract.face_crop.scale}.
- Signature `{contract.signature}` of the SavedModel; labels in `labels.json`.
"""


def _calibration(meta: Mapping[str, Any]) -> str:
    return calibration_section(meta["calibration"]) + "\n" if "calibration" in meta else ""


def _limits(meta: Mapping[str, Any]) -> str:
    return f"""## Limits

- Trained on 48x48 grayscale, mostly frontal faces of FER2013: expect lower accuracy on
  profile views, occlusions, very small or blurred faces, and colour cues are ignored.
- Emotion labels are crowd judgements of posed or spontaneous expressions, not of how a
  person feels. Rare classes (disgust, fear) have few training images and the lowest recall.
- Do not use it to make decisions about people (hiring, policing, health).

Built with TensorFlow {meta["tensorflow"]}, Keras {meta["keras"]}, code revision
`{meta["code_revision"]}`, on {meta["created"]}.{_trained_with(meta)}
"""


def _trained_with(meta: Mapping[str, Any]) -> str:
    revs = meta.get("training_code_revisions")
    if not revs or revs == [meta["code_revision"]]:
        return ""
    return " Trained with code revision(s) " + ", ".join(f"`{r}`" for r in revs) + "."


def model_card(contract: ModelContract) -> str:
    """The card for one exported version, from its contract."""
    meta = contract.details
    t = meta["training"]
    ds = meta["dataset"]
    hist = meta.get("history", [])
    labels_src = (
        f"CSV `{t['labels']}` column `{t['label_column']}`"
        + (" with vote-distribution soft labels" if t["soft_labels"] else "")
        if t["labels"]
        else "class-folder names"
    )
    return f"""# {contract.name} model, version {contract.version}

Facial emotion classifier: one face crop in, probabilities of {", ".join(contract.labels)} out.

{_contract(contract)}
## Data

- Source: `{t["data"]}`, labels from {labels_src}.
- Images per split: {ds["images"]}; per class: {ds["per_class"]}.
- Dropped: {ds["dropped"] or "nothing"}; skipped while reading: {ds["skipped"] or "nothing"}.
- Dataset fingerprint `{ds["fingerprint"]}`.

## Recipe

Recipe `{t["recipe"]}`: MobileNetV2 (alpha {t["alpha"]}, base weights `{meta["base_weights"]}`),
{t["input_size"]} px, global average pooling, dropout {t["dropout"]}, softmax.
Stage 1: base frozen, {t["stage1_epochs"]} epoch(s) at {t["stage1_lr"]}.
Stage 2: {"all" if t["unfreeze"] == 0 else "the last " + str(t["unfreeze"])} base layers
trainable, BatchNorm {t["bn_mode"]}, {t["stage2_epochs"]} epoch(s) at {t["stage2_lr"]}
({t["lr_schedule"]} schedule), early stopping patience {t["early_stopping"]}.
Batch {t["batch_size"]}, class weights `{t["class_weight"]}`, label smoothing
{t["label_smoothing"]}, augmentation: flip {t["flip"]}, rotation {t["rotation"]} deg,
shift {t["shift"]}, shear {t["shear"]}, zoom {t["zoom"]},
random erasing {t.get("erasing", 0.0)}{_appearance(t)}. Seed {t["seed"]}.{_init_section(meta)}
Best epoch (stage, epoch): {meta.get("best_epoch")}; stopped early: {meta.get("stopped_early")};
exported: {_exported_epoch(meta)}.
Training time {meta.get("train_seconds", 0) / 60:.0f} min (epochs only); mean throughput
{_speed(hist, 1)} images/s in stage 1 and {_speed(hist, 2)} images/s in stage 2 on the
training machine.

![training curves](training_curves.png)
{_distill_section(meta)}{_adjustment_section(meta)}
## Metrics

{_metrics_section(contract)}
{_calibration(meta)}{_limits(meta)}"""


def ensemble_card(contract: ModelContract) -> str:
    """The card for an ensemble version: its members, then the same metrics and limits."""
    meta = contract.details
    ens = meta["ensemble"]
    rows = ["| member | recipe | epochs | started from | val accuracy | training, with its start |"]
    rows.append("|---|---|---|---|---|---|")
    for m in ens["members"]:
        t = m["training"]
        val = m["val_accuracy"]
        rows.append(
            f"| `{m['folder']}` ({m['name']} v{m['version']}) | `{t.get('recipe')}` | "
            f"{t.get('stage1_epochs')} + {t.get('stage2_epochs')} | "
            f"{'`' + m['init_from'] + '`' if m['init_from'] else 'ImageNet'} | "
            f"{'n/a' if val is None else f'{val:.4f}'} | {m['train_seconds'] / 60:.0f} min |"
        )
    members = "\n".join(rows)
    return f"""# {contract.name} model, version {contract.version}

Facial emotion classifier: one face crop in, probabilities of {", ".join(contract.labels)} out.
An ensemble: {ens["combine"]} of {len(ens["members"])} exported versions, in one
SavedModel (the members' weights are inside it; it costs the compute of all of them).

{_contract(contract)}
## Members

Made with `python -m trainer ensemble` from these versions (their own model cards give
their data and recipes in full):

{members}

Data: the members' dataset (fingerprint `{meta["dataset"]["fingerprint"]}`), images per
split {meta["dataset"]["images"]}; the metrics below use the members' own splits.
Training time of all members and what they started from: {meta["train_seconds"] / 60:.0f}
min (epochs only).

## Metrics

{_metrics_section(contract)}
{_calibration(meta)}{_limits(meta)}"""
