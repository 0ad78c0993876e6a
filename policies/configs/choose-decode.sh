#!/usr/bin/env bash
# How a trained sinew-tiny policy decodes each action dimension, chosen on the validation seeds
# (6,000,000+, training phrasings; never the test seeds) and written into its config.json
# (docs/training.md, "Decoding per joint"):
#
#   bash policies/configs/choose-decode.sh so101|panda POLICY_DIR WORKDIR
#
# Every dimension starts as `expectation` (the mean of its bin distribution). Then, one
# dimension at a time in action order, `mode` (the mean of the most likely bin and its
# neighbours) is tried in its place and kept if the mean success over reach, push and
# pick-and-place rises. Each evaluation goes to WORKDIR/decode-K (K = the dimensions tried so
# far), is skipped when already there, and its wall time goes to WORKDIR/times.txt.
# SINEW_BIN: the sinew binary (default target/release/sinew).
set -euo pipefail
cd "$(dirname "$0")/../.."
robot=${1:?usage: choose-decode.sh so101|panda POLICY_DIR WORKDIR}
policy=${2:?usage: choose-decode.sh so101|panda POLICY_DIR WORKDIR}
work=${3:?usage: choose-decode.sh so101|panda POLICY_DIR WORKDIR}
sinew=${SINEW_BIN:-target/release/sinew}
mkdir -p "$work"
dims=$(grep -o '"action_dim": *[0-9]*' "$policy/config.json" | grep -o '[0-9]*$')

# Mean success over all tasks of the policy as its config.json now decodes, on the validation
# seeds; evaluated into $1 unless it is there.
score() {
    local out=$1
    if [ ! -f "$out/eval.json" ]; then
        local t0
        t0=$(date +%s)
        "$sinew" eval --robot "$robot" --policy "$policy" --tasks reach,push,pick-place --episodes 100 --seed 6000000 --phrasings training --jobs "${SINEW_JOBS:-2}" --out "$out" >/dev/null
        echo "validation $(basename "$out"): $(($(date +%s) - t0)) s" >>"$work/times.txt"
    fi
    grep -o '"pc_success": [0-9.]*' "$out/eval.json" | head -1 | grep -o '[0-9.]*$'
}

joined() {
    local IFS=,
    echo "$*"
}

decode=()
for ((k = 0; k < dims; k++)); do
    decode+=(expectation)
done
"$sinew" policy decode "$policy" --set "$(joined "${decode[@]}")" >/dev/null
best=$(score "$work/decode-0")
echo "decode $(joined "${decode[@]}"): $best%" | tee -a "$work/times.txt"
for ((k = 0; k < dims; k++)); do
    try=("${decode[@]}")
    try[k]=mode
    "$sinew" policy decode "$policy" --set "$(joined "${try[@]}")" >/dev/null
    pc=$(score "$work/decode-$((k + 1))")
    echo "decode $(joined "${try[@]}"): $pc%" | tee -a "$work/times.txt"
    if awk "BEGIN { exit !($pc > $best) }"; then
        decode=("${try[@]}")
        best=$pc
    fi
done
"$sinew" policy decode "$policy" --set "$(joined "${decode[@]}")"
echo "chosen decode $(joined "${decode[@]}") ($best%)" | tee -a "$work/times.txt"
