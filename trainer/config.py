"""Training options: one dataclass, two named recipes, overridable from the command line."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from trainer.contract import ContractError, ModelContract
from trainer.errors import TrainerError

TEACHER_MODES = (
    "cached",
    "online",
)  # how distill runs its teacher (trainer/distillation/distill.py)
TEACHER_VIEWS = (
    "augmented",
    "framed",
)  # what an online teacher is shown (trainer/distillation/distill.py)
KEEP = ("best", "last")  # which epoch's weights a run exports


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a training run does; saved in the run folder."""

    data: str = ""
    labels: str | None = None  # CSV with labels; None: class-folder names
    label_column: str = "label"
    soft_labels: bool = False  # train on the vote distribution from the CSV
    min_votes: int = 2  # FER+ practice: a single vote is annotator noise
    name: str = "emotion"
    input_size: int = 96
    alpha: float = 1.0  # MobileNetV2 width multiplier
    base_weights: str = "imagenet"  # a path to an .h5, "imagenet" (download) or "none"
    val_fraction: float = 0.2  # used only when the data has no validation split
    seed: int = 42
    drop_duplicates: bool = False
    drop_blank: bool = False
    batch_size: int = 64
    rotation: float = 20.0  # degrees
    shift: float = 0.2  # fraction of width / height
    shear: float = 0.2
    zoom: float = 0.2
    flip: bool = True
    erasing: float = 0.0  # probability of erasing a random patch (Zhong et al., 2017)
    # Appearance augmentation (trainer/appearance.py); all off in both recipes.
    brightness: float = 0.0  # random brightness shift up to +-this share of 0..255
    contrast: float = 0.0  # random contrast factor in [1 - this, 1 + this]
    gamma: float = 0.0  # random gamma, log-uniform in [1 / (1 + this), 1 + this]
    blur: float = 0.0  # probability of a Gaussian blur (sigma up to 1.5 px at 48 px)
    low_res: float = 0.0  # probability of a down- and up-scale through 24 px .. input size
    noise: float = 0.0  # additive gray Gaussian noise, std drawn up to this (pixel units)
    class_weight: str = "balanced"  # balanced, sqrt or none
    dropout: float = 0.5
    stage1_epochs: int = 5
    stage1_lr: float = 1e-3
    stage2_epochs: int = 5
    stage2_lr: float = 1e-5
    unfreeze: int = 50  # last N base layers trainable in stage 2; 0 means all
    bn_mode: str = "frozen"  # "frozen": BatchNorm in inference mode; "train": updated
    lr_schedule: str = "constant"  # constant, cosine or plateau
    early_stopping: int = 0  # patience in epochs on val loss; 0 turns it off
    # Which weights are exported: "best", the epoch of the lowest validation loss (against
    # the labels); "last", the last epoch's (the end of the cosine cycle). A teacher from
    # outside the training data moves the student away from the labels on purpose, so the
    # loss against them is the wrong judge there. It decides nothing about training, so a
    # resumed run may change it.
    keep: str = "best"
    label_smoothing: float = 0.0
    distribute: str = "none"  # none or mirrored
    max_bad: int = 100  # unreadable images tolerated before the run stops
    recipe: str = "finetune"
    init_from: str | None = None  # an exported model version to start from (warm restart)
    # Knowledge distillation (trainer/distillation/distill.py): train targets mixed with teachers'.
    # Each an exported model version or an ONNX expression model
    # (trainer/distillation/face_teacher.py); none: no distillation. Old run folders name one
    # teacher as a string: read as one.
    teacher: tuple[str, ...] = ()
    # Each teacher's share of the train target, in --teacher order; the labels get the rest.
    # Unset: 0.5 for a single teacher.
    teacher_weight: tuple[float, ...] = ()
    temperature: float = 1.0  # teacher probabilities softened as p ** (1 / T), renormalised
    teacher_tta: bool = True  # average the teacher over each image and its mirror
    # "cached": the teacher once per clean training image (TensorFlow, teacher.npz in the
    # run folder); "online": on every augmented batch through OpenVINO, no cache.
    teacher_mode: str = "cached"
    # Online, what the teacher sees: "augmented", the student's very image; "framed", the
    # same image before the appearance changes and erasing (flip and geometry only).
    teacher_view: str = "augmented"
    # An ONNX teacher's face detector (its landmarks align the face); "": the YuNet file
    # beside the teacher (as in ../shared/pretrained/).
    yunet: str = ""
    # Where an ONNX teacher's outputs are cached by image
    # (trainer/distillation/face_teacher.py); "": the
    # run folder. A folder kept in git spares later sessions the teacher's pass.
    teacher_cache: str = ""

    def __post_init__(self):
        # Tuples whatever they were given as (a list from the CLI or JSON, a string and a
        # float from a run folder written when distill took one teacher).
        teachers = (self.teacher,) if isinstance(self.teacher, str) else self.teacher or ()
        weights = self.teacher_weight
        weights = (weights,) if isinstance(weights, int | float) else weights or ()
        object.__setattr__(self, "teacher", tuple(str(t) for t in teachers))
        object.__setattr__(self, "teacher_weight", tuple(float(w) for w in weights))

    def teachers(self) -> list[tuple[str, float]]:
        """(teacher, its weight) in --teacher order; a single teacher's weight 0.5 if unset."""
        weights = self.teacher_weight or ((0.5,) if len(self.teacher) == 1 else ())
        return list(zip(self.teacher, weights, strict=True))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})

    def validate(self) -> None:
        checks = [
            (0 < self.val_fraction < 1, "--val-fraction must be between 0 and 1"),
            (self.batch_size > 0, "--batch-size must be positive"),
            (self.input_size >= 32, "--input-size must be at least 32"),
            (self.class_weight in ("balanced", "sqrt", "none"), "bad --class-weight"),
            (self.bn_mode in ("frozen", "train"), "--bn must be frozen or train"),
            (self.lr_schedule in ("constant", "cosine", "plateau"), "bad --lr-schedule"),
            (self.distribute in ("none", "mirrored"), "--distribute must be none or mirrored"),
            (self.stage1_epochs >= 0 and self.stage2_epochs >= 0, "epochs must be >= 0"),
            (self.stage1_epochs + self.stage2_epochs > 0, "nothing to train: 0 epochs"),
            (0 <= self.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
            (self.unfreeze >= 0, "--unfreeze must be >= 0"),
            (self.keep in KEEP, "--keep must be best or last"),
            (0 <= self.erasing <= 1, "--erasing must be a probability in [0, 1]"),
            *self._appearance_checks(),
            (
                len(self.teacher_weight) == len(self.teacher)
                or (not self.teacher_weight and len(self.teacher) <= 1),
                "give one --teacher-weight per --teacher, in the same order",
            ),
            (
                all(w >= 0 for w in self.teacher_weight) and sum(self.teacher_weight) <= 1,
                "--teacher-weight: each must be >= 0 and together at most 1 (the labels get "
                "the rest)",
            ),
            (self.temperature > 0, "--temperature must be positive"),
            (self.teacher_mode in TEACHER_MODES, "--teacher-mode must be cached or online"),
            (
                self.teacher_mode == "cached" or any(not _onnx(t) for t in self.teacher),
                "--teacher-mode online needs an exported version as --teacher (an ONNX "
                "teacher is always cached: its faces are aligned once, on the clean image)",
            ),
            (self.teacher_view in TEACHER_VIEWS, "--teacher-view must be augmented or framed"),
            (
                self.teacher_view == "augmented" or self.teacher_mode == "online",
                "--teacher-view framed needs --teacher-mode online (a cached teacher sees the "
                "unaugmented image)",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise TrainerError(msg)
        if self.init_from:
            exported_contract(self.init_from, "--init-from")
        for teacher in self.teacher:
            self._check_teacher(teacher)
        weights = self.base_weights
        if weights not in ("imagenet", "none") and not Path(weights).is_file():
            raise TrainerError(
                f"--base-weights {weights}: no such file (give a path, 'imagenet' or 'none')"
            )

    def _appearance_checks(self) -> list[tuple[bool, str]]:
        return [
            (0 <= self.brightness <= 1, "--brightness must be in [0, 1] (a share of 0..255)"),
            (0 <= self.contrast <= 1, "--contrast must be in [0, 1]"),
            (self.gamma >= 0, "--gamma must be >= 0"),
            (0 <= self.blur <= 1, "--blur must be a probability in [0, 1]"),
            (0 <= self.low_res <= 1, "--low-res must be a probability in [0, 1]"),
            (0 <= self.noise <= 255, "--noise must be a pixel std in [0, 255]"),
        ]

    def _check_teacher(self, teacher: str) -> None:
        # Checked here, before the data is decoded: the labels are checked once it is
        # (trainer.distillation.distill.open_teachers).
        from trainer.distillation.face_teacher import is_onnx_teacher, yunet_for

        if is_onnx_teacher(teacher):
            if not Path(teacher).is_file():
                raise TrainerError(f"--teacher {teacher}: no such file")
            yunet_for(teacher, self.yunet)  # refuses a missing detector now
            return
        size = exported_contract(teacher, "--teacher").input_size
        if size != self.input_size:
            raise TrainerError(
                f"--teacher {teacher}: its input is {size} px, the student's "
                f"{self.input_size} px (set --input-size {size} or choose another teacher)"
            )


def _onnx(teacher: str) -> bool:
    from trainer.distillation.face_teacher import is_onnx_teacher

    return is_onnx_teacher(teacher)


def exported_contract(folder: str, option: str) -> ModelContract:
    """The contract of the exported model version ``folder``, given as ``option``.

    Raises:
        TrainerError: ``folder`` is not an exported version, or its metadata is malformed.
    """
    try:
        return ModelContract.read(Path(folder))
    except ContractError as e:
        raise TrainerError(f"{option} {folder}: {e.reason}") from e


# The original notebook: ImageDataGenerator augmentation, 80/20 split, frozen base for 5
# epochs at 1e-3, then the last 50 layers at 1e-5 (BatchNorm in inference mode).
# ImageDataGenerator's shear_range is an angle in degrees: the notebook's 0.2 shears by
# 0.2 degrees, tan(0.2 deg) = 0.0035 of the width, not by 20 %.
NOTEBOOK = TrainConfig(recipe="notebook", batch_size=32, class_weight="none", shear=0.0035)

# Our default, from measurement: fine-tuning every layer with BatchNorm statistics updated
# learns far more than a frozen base, and a cosine decay lets the moving statistics settle
# before the end. Stage 1 only warms up the new head so its random gradients don't wreck
# the pretrained filters. Lighter augmentation than the notebook: 48-px faces lose too
# much at +-20 degrees and 20% shifts. Square-root class weights lift the rare classes
# without the accuracy loss of fully balanced weights (disgust is ~0.5% of FER+).
FINETUNE = TrainConfig(
    recipe="finetune",
    stage1_epochs=1,
    stage1_lr=1e-3,
    stage2_epochs=12,
    stage2_lr=1e-3,
    unfreeze=0,
    bn_mode="train",
    lr_schedule="cosine",
    early_stopping=4,
    rotation=10.0,
    shift=0.1,
    shear=0.0,
    zoom=0.1,
    class_weight="sqrt",
)

RECIPES = {"notebook": NOTEBOOK, "finetune": FINETUNE}


def make_config(recipe: str, **overrides) -> TrainConfig:
    """A recipe with the options the user set (``None`` means: keep the recipe's value)."""
    if recipe not in RECIPES:
        raise TrainerError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    cfg = replace(RECIPES[recipe], **{k: v for k, v in overrides.items() if v is not None})
    cfg.validate()
    return cfg
