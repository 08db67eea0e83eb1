#!/usr/bin/env bash
# The project's device check, for a machine with a GPU (under 10 minutes there); `--device cpu` runs the
# same steps on a CPU (the tests do, so the script keeps working between GPU sessions).
#
#   benchmarks/gpu_check.sh [--device cuda|cpu] [--mnist DIR] [--out DIR]
#
# 1. config/smoke.yaml end to end on the device (in a scratch working directory);
# 2. the speed benchmark, individual vs group, dense vs factored projections, medians of 3: MNIST (first
#    10,000 images) with ann-m when --mnist names a folder with the IDX files, else bundled digits, ann-s;
# 3. determinism (two identical runs of each attribution, bitwise or the largest relative difference)
#    and peak GPU memory (benchmarks/gpu_check.py).
# Writes DIR/summary.json (and each step's log and output) and prints it; exits non-zero if a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
device=cuda
mnist=""
out=benchmarks/out/gpu_check
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --mnist) mnist="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
python="${PYTHON:-python}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }

echo "== 1/3 smoke workflow on $device"
t0=$(now)
"$python" -m snakemake --configfile config/smoke.yaml --config device="$device" --directory "$work/smoke" \
    --cores all > "$out/smoke.log" 2>&1 || { tail -30 "$out/smoke.log"; exit 1; }
t1=$(now)
cp "$work/smoke/results/tables/retraining.csv" "$out/smoke_retraining.csv"

echo "== 2/3 speed benchmark on $device"
if [ -n "$mnist" ]; then
    speed=(--dataset mnist --model ann-m --root "$mnist" --n-train 10000 --targets 500 --repeats 3)
    det=(--dataset mnist --model ann-m --root "$mnist" --n-train 10000)
else
    speed=(--dataset digits --model ann-s --targets 200 --repeats 3)
    det=(--dataset digits --model ann-s)
fi
"$python" benchmarks/speedup.py "${speed[@]}" --methods tracin,trak --projections dense,factored \
    --groupings random --sizes 16,64 --device "$device" --out "$out/speedup.csv" > "$out/speedup.log" 2>&1 \
    || { tail -30 "$out/speedup.log"; exit 1; }
t2=$(now)

echo "== 3/3 determinism and memory on $device"
"$python" benchmarks/gpu_check.py "${det[@]}" --device "$device" --out "$out/determinism.json" \
    > "$out/determinism.log" 2>&1 || { tail -30 "$out/determinism.log"; exit 1; }
t3=$(now)

"$python" - "$out" "$device" "$t0" "$t1" "$t2" "$t3" <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
out, device, t0, t1, t2, t3 = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
det = json.loads(Path(out, "determinism.json").read_text())
speed = pd.read_csv(Path(out, "speedup.csv"))
summary = {"device": device, "device_name": det["device_name"], "smoke_s": round(t1 - t0, 1),
           "speed_s": round(t2 - t1, 1), "determinism_s": round(t3 - t2, 1),
           "speedup_rows": len(speed), "peak_gpu_memory_mb": det["peak_gpu_memory_mb"],
           "bitwise_identical": {k: v["bitwise_identical"] for k, v in det["cases"].items()},
           "max_rel_diff": {k: v["max_rel_diff"] for k, v in det["cases"].items()}}
Path(out, "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
PY
