#!/usr/bin/env bash
# Side-by-side speed: official MTT (A) against haba plain MTT fp32 (B) and haba plain MTT with
# --amp auto --compile (C); CIFAR-10-shaped Fashion-MNIST, IPC 1, the official IPC-1 arguments, the
# same expert (haba's, converted by convert.py), evaluation off. Interleaved A B C A B C.
#
# Run it in an idle window: bash benchmarks/reference_mtt/timing.sh   (then: python benchmarks/reference_mtt/summarize.py OUT)
# It SIGSTOPs every other `python -m habacli` process found at its start and SIGCONTs them when it
# ends (EXIT/INT/TERM/HUP trap). Only a kill -9 of this script skips the trap: then run
#   kill -CONT <the pids listed in /work/mttref/timing/env.txt>
# Knobs (environment): ITERS (default 12), THREADS (default 2), ROUNDS (default 2), OUT (log folder,
# default /work/mttref/timing), NOPAUSE=1 (pause nothing: only for smoke tests under load, e.g.
# OUT=/work/mttref/smoke NOPAUSE=1 ITERS=2 ROUNDS=1 THREADS=1 bash timing.sh).
set -u

ROOT=${ROOT:-/work/mttref}   # scratch: mtt/ (official .py files), venv/, experts/, buffers/ (README.md)
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DATA=${DATA:-/work/ref/data}   # the CIFAR-shaped folder (benchmarks/make_cifar_fmnist.py)
OUT=${OUT:-$ROOT/timing}
ITERS=${ITERS:-12}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
PY=${PY:-$(command -v python)}   # the interpreter haba runs with
REFPY=$ROOT/venv/bin/python                  # system torch 2.14.1 + kornia + wandb
TIMEFMT='TIME_V elapsed=%e maxrss_kb=%M user=%U sys=%S exit=%x'

# --- pause the other haba processes (list taken before launching any of ours) ---------------------
PAUSED=$(pgrep -f "python -m habacli" | tr '\n' ' ')
[ "${NOPAUSE:-0}" = 1 ] && PAUSED=""
resume() {
    for p in $PAUSED; do kill -CONT "$p" 2>/dev/null; done
    echo "resumed: ${PAUSED:-none}"
}
trap resume EXIT
trap 'exit 130' INT TERM HUP

mkdir -p "$OUT" "$ROOT/run" "$ROOT/run_haba"
rm -f "$OUT"/*.log "$OUT"/*.safetensors
{
    echo "date: $(date -Is)"
    lscpu | grep 'Model name'
    echo "nproc: $(nproc); threads: $THREADS; iterations: $ITERS; rounds: $ROUNDS"
    echo "torch: $($PY -c 'import torch; print(torch.__version__)' 2>/dev/null)"
    echo "paused (SIGSTOP, resumed at exit): ${PAUSED:-none}"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/env.txt"
for p in $PAUSED; do kill -STOP "$p" 2>/dev/null; done
sleep 5   # let the paused processes' last work drain
echo "load after pause: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/env.txt"
cat "$OUT/env.txt"

export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS PYTHONUNBUFFERED=1 WANDB_MODE=disabled

OFFICIAL="--dataset=CIFAR10 --ipc=1 --syn_steps=50 --expert_epochs=2 --max_start_epoch=2 --zca --lr_img=100 --lr_lr=1e-7 --lr_teacher=0.01 --pix_init real"
HABA="distill cifar10 --data-dir $DATA --ipc 1 --baseline mtt --no-factorize --preset paper --iterations $ITERS --eval-every 0 --checkpoint-every 0 --log-every 1 --device cpu --experts $ROOT/experts --init real --set zca=true --set lr_img=100 --set momentum_img=0.5 --set dsa=true --set syn_steps=50 --set expert_epochs=2 --set max_start_epoch=2 --set lr_teacher=0.01 --set lr_lr=1e-7 --set batch_syn=0"

run_A() {  # official MTT; --Iteration=N-1 runs iterations 0..N-1 (N iterations)
    (cd "$ROOT/run" && /usr/bin/time -f "$TIMEFMT" "$REFPY" "$HERE/launch.py" "$ROOT/mtt/distill.py" $OFFICIAL \
        --data_path $DATA --buffer_path "$ROOT/buffers" \
        --Iteration=$((ITERS - 1)) --eval_it=1000 --num_eval=0) 2>&1 | "$PY" "$HERE/stamp.py" "$OUT/A_mtt_ref_$1.log"
}
run_B() {  # haba plain MTT, fp32
    (cd "$ROOT/run_haba" && PYTHONPATH=$REPO /usr/bin/time -f "$TIMEFMT" "$PY" -m habacli $HABA \
        --out "$OUT/B_$1.safetensors") 2>&1 | "$PY" "$HERE/stamp.py" "$OUT/B_haba_fp32_$1.log"
}
run_C() {  # haba plain MTT, --amp auto --compile
    (cd "$ROOT/run_haba" && PYTHONPATH=$REPO /usr/bin/time -f "$TIMEFMT" "$PY" -m habacli $HABA \
        --amp auto --compile --out "$OUT/C_$1.safetensors") 2>&1 | "$PY" "$HERE/stamp.py" "$OUT/C_haba_ampc_$1.log"
}

T0=$(date +%s)
for r in $(seq 1 "$ROUNDS"); do
    for w in A B C; do
        s=$(date +%s)
        "run_$w" "$r"
        echo "round $r $w: $(( $(date +%s) - s )) s (total $(( $(date +%s) - T0 )) s)"
    done
done
echo "timing.sh total: $(( $(date +%s) - T0 )) s" | tee -a "$OUT/env.txt"
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/env.txt"
"$PY" "$HERE/summarize.py" "$OUT"
