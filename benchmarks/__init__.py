"""Benchmarks of the CVLS suite: every performance claim comes from one of these scripts.

Each is one command, prints a readable table plus its headline claims (value, target, met or
not) and writes the same as JSON to outputs/benchmarks/<name>[-full].json, with the machine
(CPU count, torch threads, torch version, device name). Ratios are measured in one process from
interleaved repetitions after a warm-up, as median / median; never from a timed test.

| # | script | measures | target |
|---|--------|----------|--------|
| 1 | method_overhead.py   | step time of each Table-3 variant / Baseline                | CCL+RHIC+LCF <= 1.10x |
| 2 | backbone_floor.py    | full CVLS step / backbone-alone step (+ FLOP ratio)         | <= 1.35x at full size |
| 3 | object_scaling.py    | step and contrastive+RHIC time for K = 2, 4, 8, 16 objects  | ccl t(16)/t(2) <= 8 |
| 4 | input_pipeline.py    | DataLoader clips/s / training-step clips/s                  | >= 3x on the CPU default |
| 5 | extraction.py        | extraction-stage frames/s / bare PyAV decode frames/s       | >= 0.8 |
| 6 | tracking_overhead.py | training run with MLflow / untracked                        | <= 1.02 |
| 7 | memory.py            | peak RSS of a CPU training run; peak CUDA memory, full size | RSS <= 4 GiB (CPU default) |
| 8 | gpu_throughput.py    | fp32 vs bf16+channels_last (+compile) clips/s, MFU, peak mem | >= 30% MFU (CUDA only) |

gpu_check.sh is the prepared check for a lent CUDA machine (8 at three batch sizes, a full-size
smoke of the real CLIs, then 8 with --compile); gpu_wheels.sh fills the ./.whl it installs from.

Target 1 holds for the default and the full profile.

    python benchmarks/<script> [--profile default|full] [--reps N] [--device auto|cpu|cuda] [--threads N]
    python benchmarks/run_all.py [--profiles default full]      # 1-7 (+8 on CUDA) and a summary table

`--profile full` is the paper's setting, profiles/paper.yaml as a layer (--set profiles=[paper]:
ResNet-50, 320x320, C = 256; on CPU with batch 1 and fewer repetitions, said in the output). Benchmarks
1-3 and 8 time synthetic batches (no data needed); 4-7 generate and extract their own small
store under outputs/bench/ once. Shared code, a module per idea: cli.py (options, run context),
timing.py (interleaved medians, FLOPs), output.py (headlines, table, JSON), fixtures.py (model,
collated synthetic batch, training step), stores.py (the benchmark data under outputs/bench/).
"""
