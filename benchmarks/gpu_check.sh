#!/usr/bin/env bash
# The prepared GPU check (issue #10, item 5): one call on a lent CUDA machine, ~6.5 minutes on an H200.
#   1. benchmark 8 at full size (profiles/paper.yaml, CCL+RHIC+LCF): clips/s fp32 vs
#      bf16 + channels_last, MFU against the card's dense bf16 peak and each mode's peak CUDA
#      memory, at batch 8 / 16 / 32;
#   2. a smoke of the real CLIs on a full-size synthetic store (320x400 videos, input 320):
#      generate -> extract -> pretext (20 steps) -> train (2 x 25 = 50 steps, under torchrun)
#      -> evaluate, then no MLflow run may be left RUNNING;
#   3. benchmark 8 again at batch 16 with torch.compile as a third mode (compilation is slow,
#      so it runs last, under its own time limit).
# Each part has its own time limit and failure does not stop the next; everything goes to OUTDIR.
#
#   bash benchmarks/gpu_check.sh OUTDIR
#   GPU_CHECK_DRY=1 bash benchmarks/gpu_check.sh /tmp/gpu-dry    # the same steps on this CPU at the default sizes
#
# The CUDA image lacks some of the suite's packages (mlflow-skinny, sqlalchemy, alembic, av,
# pydantic, optuna, pycocotools and their needs); where ./.whl holds their wheels and requirements.txt
# (benchmarks/gpu_wheels.sh makes both) they are installed from it first.
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu_check.sh OUTDIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
smoke_root=${SMOKE_ROOT:-/tmp/gpu-smoke}

if [ "${GPU_CHECK_DRY:-0}" = 1 ]; then
    bench=(--device cpu --profile default --reps 1 --steps 1)
    result=outputs/benchmarks/gpu_throughput.json
    batches=(1 2 3)
    compile_batch=1
    size=(--set data.synthetic.height=64 --set data.synthetic.width=80)
    model=(--set train.batch_size=8)  # params.yaml's own (CPU) model and input size, small batches
    limit=600
else
    bench=(--reps 5 --steps 3)
    result=outputs/benchmarks/gpu_throughput-full.json
    batches=(8 16 32)
    compile_batch=16
    size=(--set data.synthetic.height=320 --set data.synthetic.width=400)
    # the paper's setting (profiles/paper.yaml: ResNet-50, 320 px, its heads, batch 8), its backbone
    # from 20 pretext steps instead of the ImageNet file the machine lacks
    model=(--set "profiles=[paper]" --set model.init=pretext --set model.pretrained_weights=null)
    limit=150
fi

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT  # the logs travel in $out/logs.tgz
part() {  # part NAME SECONDS CMD...: run CMD under a time limit, log it, report its exit and time
    local name=$1 secs=$2 t0 rc
    shift 2
    t0=$(date +%s%N)
    timeout "$secs" "$@" >"$logs/$name.log" 2>&1
    rc=$?
    printf '%-20s rc=%-3s %7d ms\n' "$name" "$rc" $((($(date +%s%N) - t0) / 1000000)) | tee -a "$out/summary.txt"
    tr '\r' '\n' <"$logs/$name.log" | grep -av 'it/s\]\|batch/s\]\|video/s\]\|Requirement already' | tail -n 14
    tar czf "$out/logs.tgz" -C "$logs" .  # after every part: a killed call still brings back the logs
    return $rc
}

: >"$out/summary.txt"
if [ -f .whl/requirements.txt ]; then
    part pip_install 120 "$py" -m pip install --no-index --find-links .whl -r .whl/requirements.txt
fi
part nvidia_smi 30 nvidia-smi
part versions 60 "$py" -c "import platform, torch, torchvision, av, mlflow, optuna, pydantic, sqlalchemy
print('python', platform.python_version(), 'torch', torch.__version__, 'torchvision', torchvision.__version__,
      'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')
print('av', av.__version__, 'mlflow', mlflow.__version__, 'optuna', optuna.__version__, 'pydantic', pydantic.__version__)"

parts=${PARTS:-throughput smoke compile}  # a subset reruns only those parts
has() { [[ " $parts " == *" $1 "* ]]; }

# 1. throughput, MFU and peak memory per mode at three batch sizes
if has throughput; then
    part throughput "$limit" "$py" benchmarks/gpu_throughput.py "${bench[@]}" --batch-sizes "${batches[@]}"
    cp "$result" "$out/throughput.json"
fi

# 2. the real CLIs on a full-size synthetic store
sets=(--set "paths.outputs=$smoke_root" "${size[@]}" "${model[@]}"
    --set data.synthetic.train_videos=140 --set data.synthetic.test_videos=8 --set data.synthetic.jhmdb_videos=4
    --set pretrain.steps=20 --set pretrain.batch_size=8
    --set train.epochs=2 --set train.max_steps_per_epoch=25)
if has smoke; then
    rm -rf "$smoke_root"
    part smoke_generate "$limit" "$py" -m core.data.synthetic "${sets[@]}" &&
        part smoke_extract "$limit" "$py" -m core.data.extract "${sets[@]}" &&
        part smoke_pretext "$limit" "$py" -m core.pretext "${sets[@]}" &&
        part smoke_train "$limit" "$py" -m torch.distributed.run --standalone --nproc_per_node=1 \
            -m core.train --out "$smoke_root/train" "${sets[@]}" &&
        part smoke_evaluate "$limit" "$py" -m core.evaluate --out "$smoke_root/eval" "${sets[@]}" &&
        part smoke_no_running 60 "$py" -c "
import sys
from mlflow import MlflowClient
c = MlflowClient('sqlite:///$smoke_root/mlflow.db')
runs = [r for e in c.search_experiments() for r in c.search_runs([e.experiment_id])]
running = [r.info.run_name for r in runs if r.info.status == 'RUNNING']
print(len(runs), 'runs;', 'RUNNING:', running or 'none')
sys.exit(1 if running else 0)"
    cp "$smoke_root"/train/run.json "$out/smoke_run.json" 2>/dev/null
    cp "$smoke_root"/eval/metrics.json "$out/smoke_metrics.json" 2>/dev/null
fi

# 3. torch.compile as a third mode, at one batch size
if has compile; then
    part throughput_compile "$limit" "$py" benchmarks/gpu_throughput.py "${bench[@]}" --batch-sizes "$compile_batch" --compile
    cp "$result" "$out/throughput_compile.json"
fi

cat "$out/summary.txt"
