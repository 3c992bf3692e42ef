#!/usr/bin/env bash
# Train the versions the service has shipped (models/emotion/1-6, and 15, served since #32)
# again, from ../shared data, with the trainer only; 15 needs 1-6 (6 is its teacher), 5 and
# 11 (its start). They are written into RUN_DIR/models/emotion/<n> (never over models/):
#   scripts/train_shipped_model.sh [RUN_DIR]       (logs: RUN_DIR/{a,b,c,d,e}/train.log)
#   1) run a: 1 epoch head warm-up + 14 epochs full fine-tune from ImageNet weights,
#      cosine from 1e-3 (the recipe's early stopping never triggered: the best epoch was
#      the last);
#   2) run b: a warm restart from 1): 10 more epochs, cosine from 3e-4. No early stopping:
#      validation loss rises while the rate is high and falls as it decays (a first try
#      with patience 4 stopped after 5 epochs, at the worst point);
#   3) run c: 1 + 22 epochs from ImageNet like a), with random erasing (p 0.5);
#   4) the ensemble of 2) and 3): the mean of their probabilities;
#   5) run d: run c with seed 7 and 1 + 25 epochs;
#   6) the ensemble of 2), 3) and 5), the shipped default (best on PublicTest with flip TTA);
#   7) run e, not shipped yet: one network distilled from 6) (python -m trainer distill:
#      train targets 0.5 x FER+ votes + 0.5 x version 6's flip-averaged probabilities),
#      1 + 25 epochs from ImageNet, seed 11, with augmentation for what the robustness
#      table (python -m bench.robustness, PublicTest) showed costs version 6 most.
#      PublicTest 86.3% with flip TTA (version 6: 87.8%), far more robust (docs/model.md).
#   8) run f: 7) trained on with the teacher's share at 0.7, 16 epochs of a new cosine
#      cycle from 3e-4, the same augmentation; 9) its class-prior offsets;
#  10-13) milder augmentation, the teacher online, version 5 as the start (below);
#  15) two teachers, version 6 and a RAF-DB model (#32; below): the shipped default. Its
#      class-prior offsets chosen on PublicTest and tw-posed (versions 16 and 17, docs/model.md)
#      cost more on FER+ than the gate allows and are not built here.
# Every step is resumable: run the script again with the same RUN_DIR and it continues
# from the last finished epoch, skipping the versions already exported.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${FER_SHARED:-../shared}
RUN_DIR=${1:-runs/emotion-shipped}
MODELS=$RUN_DIR/models
COMMON=(
  --recipe finetune
  --labels "$SHARED/data/fer2013/ferplus.csv" --label-column ferplus_label --soft-labels
  --base-weights "$SHARED/pretrained/mobilenet_v2_1.0_imagenet_no_top.h5"
  --drop-blank --seed 42
)

fit() {  # fit COMMAND VERSION RUN [options...]: start the run, resume it, or skip it if exported
  local command=$1 version=$2 run=$RUN_DIR/$3
  shift 3
  [[ -f $MODELS/emotion/$version/metadata.json ]] && return
  mkdir -p "$run"
  if [[ -f $run/run/config.json ]]; then
    python -m trainer "$command" --resume "$run/run" --models-dir "$MODELS" --version "$version" \
      >>"$run/train.log" 2>&1
  else
    python -m trainer "$command" "$SHARED/data/fer2013" "${COMMON[@]}" --run-dir "$run/run" \
      --models-dir "$MODELS" --version "$version" "$@" >>"$run/train.log" 2>&1
  fi
}

train() { fit train "$@"; }      # train VERSION RUN [options...]
# distill VERSION RUN --teacher DIR [options...]: a resumed run reuses the teacher's
# outputs cached in its folder (RUN/run/teacher.npz) instead of running the teacher again.
distill() { fit distill "$@"; }

ensemble() {  # ensemble VERSION MEMBER_VERSION...: skipped if exported
  local version=$1 members=()
  shift
  [[ -f $MODELS/emotion/$version/metadata.json ]] && return
  for m in "$@"; do members+=("$MODELS/emotion/$m"); done
  python -m trainer ensemble "${members[@]}" --models-dir "$MODELS" --version "$version"
}

train 1 a --stage1-epochs 1 --stage2-epochs 14
train 2 b --init-from "$MODELS/emotion/1" --stage1-epochs 0 --stage2-epochs 10 --stage2-lr 3e-4 \
  --early-stopping 0
train 3 c --erasing 0.5 --stage1-epochs 1 --stage2-epochs 22 --early-stopping 0
ensemble 4 2 3
# The last --seed wins: run d is run c with another seed and 3 more epochs.
train 5 d --erasing 0.5 --stage1-epochs 1 --stage2-epochs 25 --early-stopping 0 --seed 7
ensemble 6 2 3 5
# The student: one network's cost at serving time, taught by the three-network ensemble.
# Augmentation from the robustness table (version 6 on PublicTest lost 29 and 11 points
# to a mouth or eye band -> erasing; 26 to noise -> noise; 22 to blur and 13 to a 24-px
# face -> blur, low resolution; 8 to over-exposure -> brightness and contrast).
distill 7 e --teacher "$MODELS/emotion/6" --teacher-weight 0.5 --temperature 1 \
  --erasing 0.5 --noise 12 --blur 0.25 --low-res 0.4 --brightness 0.15 --contrast 0.3 \
  --stage1-epochs 1 --stage2-epochs 25 --early-stopping 0 --seed 11
# 7) is 1.5 points below the ensemble on clean faces: go on from it with more of the
# teacher in the targets (the teacher's outputs cached by run e are reused when its
# teacher.npz is copied into f/run/ first; otherwise computed again, about 34 minutes).
distill 8 f --teacher "$MODELS/emotion/6" --teacher-weight 0.7 --temperature 1 \
  --erasing 0.5 --noise 12 --blur 0.25 --low-res 0.4 --brightness 0.15 --contrast 0.3 \
  --init-from "$MODELS/emotion/7" --stage1-epochs 0 --stage2-epochs 16 --stage2-lr 3e-4 \
  --early-stopping 0 --seed 11
# 8) trained with square-root class weights, which pull its predictions away from the
# class priors: per-class offsets tuned on its validation split (PublicTest) pull them back.
[[ -d $MODELS/emotion/9 ]] || python -m trainer adjust "$MODELS/emotion/8" --models-dir "$MODELS" --version 9
# 9) is far more robust than 6 but 2.5 points below it on PrivateTest (85.0 vs 87.5 with
# flip TTA), sad faces above all (recall 0.60 vs 0.76): not shipped. Next: from ImageNet
# with milder noise, blur and low-resolution augmentation, the teacher's share at 0.7.
distill 10 g --teacher "$MODELS/emotion/6" --teacher-weight 0.7 --temperature 1 \
  --erasing 0.5 --noise 6 --blur 0.1 --low-res 0.2 --brightness 0.15 --contrast 0.3 \
  --stage1-epochs 1 --stage2-epochs 25 --early-stopping 0 --seed 13
# 10) was set aside after 11 of its 25 epochs for 11): version 5 distilled on with the
# teacher online (on every augmented batch, through OpenVINO), 12 epochs of cosine from
# 3e-4. PrivateTest 86.9% with flip TTA (version 6: 87.5%), the best single network so
# far; not shipped. (Version 12, 11 with class-prior offsets, gained nothing held out.)
distill 11 h --teacher "$MODELS/emotion/6" --teacher-weight 0.7 --temperature 1 \
  --teacher-mode online \
  --erasing 0.5 --noise 6 --blur 0.1 --low-res 0.2 --brightness 0.15 --contrast 0.3 \
  --init-from "$MODELS/emotion/5" --stage1-epochs 0 --stage2-epochs 12 --stage2-lr 3e-4 \
  --early-stopping 0 --seed 17
# 13) 11) distilled on for a second, longer cycle ("patient" distillation); not on the path
# to 15, which starts from 11 (SKIP_13=1 skips its 2 hours). PrivateTest
# 87.1% with flip TTA, macro F1 0.788 (version 6: 87.5%, 0.788); more robust than 6 on
# average (docs/model.md); not shipped.
[[ ${SKIP_13:-0} == 1 ]] || distill 13 i --teacher "$MODELS/emotion/6" --teacher-weight 0.7 --temperature 1 \
  --teacher-mode online \
  --erasing 0.5 --noise 6 --blur 0.1 --low-res 0.2 --brightness 0.15 --contrast 0.3 \
  --init-from "$MODELS/emotion/11" --stage1-epochs 0 --stage2-epochs 20 --stage2-lr 2e-4 \
  --early-stopping 0 --seed 19
# 14) 13) distilled on for a third cycle: never finished (its runs were lost with their
# machines) and no longer needed: 15) starts from 11) instead.
# 15) (#32) 11) distilled on with two teachers: version 6 online (0.45 of the target) and
# OpenCV Zoo's RAF-DB expression model (0.25; faces aligned on YuNet's landmarks, its
# outputs cached by image in data/teacher-cache/, which git keeps), labels 0.3; 10 epochs
# of cosine from 2e-4, the last epoch's weights exported (--keep last: the run that made
# the shipped version 15 was resumed with it after its 5th epoch, as the loss against FER+'s
# labels, which the RAF-DB teacher moves away from on purpose, picked epoch 1). The RAF-DB
# model knows posed anger and disgust of other people, which version 6 reads as neutral.
distill 15 k --teacher "$MODELS/emotion/6" --teacher-weight 0.45 \
  --teacher "$SHARED/pretrained/facial_expression_recognition_mobilefacenet_2022july_int8.onnx" \
  --teacher-weight 0.25 --teacher-cache data/teacher-cache --temperature 1 \
  --teacher-mode online \
  --erasing 0.5 --noise 6 --blur 0.1 --low-res 0.2 --brightness 0.15 --contrast 0.3 \
  --init-from "$MODELS/emotion/11" --stage1-epochs 0 --stage2-epochs 10 --stage2-lr 2e-4 \
  --early-stopping 0 --keep last --seed 23
echo "exported $MODELS/emotion/{1..11,13,15}; evaluate with scripts/evaluate_shipped_model.sh"
