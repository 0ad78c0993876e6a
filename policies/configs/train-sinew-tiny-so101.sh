#!/usr/bin/env bash
# The whole recipe of the version-1 policy, shipped as policies/sinew-tiny-so101-v1, from nothing
# but the simulator, timed step by step, on the version-1 tasks (sim/tasks/v1/; docs/training.md,
# "Status of the version-1 policy"):
#
#   bash policies/configs/train-sinew-tiny-so101.sh [WORKDIR]     (default runs/so101-recipe)
#
# 0. DART demonstrations (data, not training: 3,000 episodes);
# 1. behaviour cloning from scratch (sinew-tiny-so101-base.toml);
# 2. fine-tuning with the goal loss (sinew-tiny-so101-goal.toml);
# 3. takeover data from the stage-2 policy, and fine-tuning on it (sinew-tiny-so101.toml);
# 4. takeover data from the stage-3 policy (other seeds), and the same fine-tuning on it, written
#    to run 9 chunk entries per inference (stage 3 keeps 7, which its takeover data used): the
#    policy shipped as policies/sinew-tiny-so101-v1 (WORKDIR/sinew-tiny-so101);
# 5. takeover data from the stage-4 policy (other seeds), and the same fine-tuning with
#    committed actions as an input (real-time chunking, sinew-tiny-so101-rtc.toml): the
#    policy shipped as policies/sinew-tiny-so101-rtc (WORKDIR/sinew-tiny-so101-rtc).
# Then the evaluation on 100 held-out seeds per task. Every step's wall time goes to
# WORKDIR/times.txt. Run again after an interruption: finished datasets are kept and training
# resumes from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p sinew-cli
sinew=target/release/sinew
work=${1:-runs/so101-recipe}
configs=policies/configs
mkdir -p "$work"

timed() {
    local name=$1
    shift
    local t0
    t0=$(date +%s)
    "$@"
    echo "$name: $(($(date +%s) - t0)) s" | tee -a "$work/times.txt"
}

# Records a dataset unless a finished one is there (a half-written one is removed first).
record() {
    local out=$1
    shift
    if [ -f "$out/meta/info.json" ]; then
        return
    fi
    rm -rf "$out"
    timed "record $(basename "$out")" "$sinew" dataset record --task v1/reach,v1/push,v1/pick-place --jobs 2 --out "$out" "$@"
}

takeover=(--takeover 0.4 --takeover-tasks reach,push --expert-fraction 0.25 --noise 0.03 --episodes 600)

record "$work/dart" --episodes 1000 --seed 0 --noise 0.03
timed "stage 1" "$sinew" train --dataset "$work/dart" --config "$configs/sinew-tiny-so101-base.toml" --out "$work/stage1"
timed "stage 2" "$sinew" train --dataset "$work/dart" --config "$configs/sinew-tiny-so101-goal.toml" --init "$work/stage1" --out "$work/stage2"
record "$work/takeover-1" --policy "$work/stage2" --seed 800000 "${takeover[@]}"
timed "stage 3" "$sinew" train --dataset "$work/takeover-1" --config "$configs/sinew-tiny-so101.toml" --init "$work/stage2" --out "$work/stage3"
record "$work/takeover-2" --policy "$work/stage3" --seed 900000 "${takeover[@]}"
timed "stage 4" "$sinew" train --dataset "$work/takeover-2" --config "$configs/sinew-tiny-so101.toml" --init "$work/stage3" --out "$work/sinew-tiny-so101" --n-action-steps 9
record "$work/takeover-3" --policy "$work/sinew-tiny-so101" --seed 600000 "${takeover[@]}"
timed "stage 5" "$sinew" train --dataset "$work/takeover-3" --config "$configs/sinew-tiny-so101-rtc.toml" --init "$work/sinew-tiny-so101" --out "$work/sinew-tiny-so101-rtc"
"$sinew" eval --policy "$work/sinew-tiny-so101" --tasks v1/reach,v1/push,v1/pick-place --episodes 100 --jobs 2 --out "$work/eval"
