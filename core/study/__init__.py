"""Optuna grid studies: one queue of (point, seed) trials for every sweep and for the ablation.

    python studies/rhic_ratio.py          [--params params.yaml] [--set k=v] [--storage URL] [--n-jobs N]
    python studies/lambda_sensitivity.py  (same options)
    python ablations/components.py        (same options: kind 'ablation', the points are the variants)

A study sweeps one params key over a fixed grid (params.studies.rhic_ratios / .lambdas) for each
seed in params.studies.seeds. Every (grid point, seed) pair is one Optuna trial that calls
`core.runs.run_variant` (train, or reuse a FINISHED run with the same config hash, then
evaluate); the objective is validation mAP (maximised). The trial's flat result row is stored
as the user attr 'row', so the outputs are written from the study alone.

Guarantees, with any number of workers (`--n-jobs N` processes, or the same command on other
machines against the same storage):
- Storage: an Optuna RDB (default sqlite:///<outputs>/optuna.db). Opening the storage, creating
  the study and enqueueing the grid happen once under `storage_lock` (a file lock next to a
  SQLite file; an advisory lock on PostgreSQL/MySQL); `load_if_exists=True` everywhere.
- Study name `<kind>-<digest>`: the identity (`core.identity`) of what the trials share (a run's
  keys but the swept key and the seed, the ablation's variants, the run fingerprint: data and
  start weights), so a changed params.yaml starts a new study instead of mixing results, and
  machines whose params differ only in operational keys (workers, paths, URLs) share one.
- The grid is enqueued explicitly (no sampler): only pairs without a WAITING/RUNNING/COMPLETE
  trial are enqueued. Workers pop WAITING trials under the same lock and check, in the same
  critical section, that no other COMPLETE or RUNNING trial has the pair (else the trial is
  PRUNED with user attr 'duplicate_of' and never trains). A trial created without a grid pair
  (possible only on a backend without a lock) is PRUNED the same way. Workers never ask the
  sampler for new points; they stop when every pair is COMPLETE (the budget: grid x seeds
  COMPLETE trials), waiting meanwhile on pairs RUNNING elsewhere.
- Resume: a claimed trial records its worker (host:pid:start, core.procs). A RUNNING trial whose
  worker died on THIS host is marked FAIL and re-enqueued at once (max 3 retries); one held on
  another host is waited out by RDBStorage heartbeats (params.studies.heartbeat_s, grace 2x),
  each waiting worker saying once which trial, since when, held by whom and for how long at
  most. The MLflow runs a dead worker left RUNNING (tags study + trial) are marked KILLED
  (`end_stale_runs`), on whichever machine notices; a run killed mid-way resumes from its
  checkpoint (core.train) when it is retried on the machine that holds it. A worker stopped by
  Ctrl-C or SIGTERM, or whose study process is gone (core.procs' lifeline), marks its trial FAIL
  and its run KILLED itself. A trial that raised is FAIL and is enqueued again by the next invocation.
- MLflow: one parent run per study (`study <name>`, found again on resume via cvls.parent_key),
  RUNNING while the study works and until its outputs are written, so it spans its children;
  each trial's run (or a light reference run when the config was trained elsewhere) is nested
  under it with tags study, trial, variant, study_point.
- Summary: what this invocation did with each (point, seed): trained here, reused (COMPLETE
  before it started, or a FINISHED run of the same config) or trained elsewhere (another process
  on the same storage meanwhile) (`core.study.outputs.origin`).
- Outputs (atomic) in <outputs>/studies/: <kind>.csv (one row per (point, seed)), <kind>.png/.svg
  (val and test mAP vs the swept value, mean line + seeds + min-max band), <kind>.json summary;
  the ablation's are core/ablation.py's <outputs>/ablation/ tables.

What is Optuna's and what is kept here, and why (checked against the real-server tests in
tests/test_several_machines.py and tests/test_studies.py):
- Optuna's: the RDB schema, heartbeats and `fail_stale_trials`, the retry of a stale trial
  (RetryFailedTrialCallback / RetryHeartbeatStaleTrialCallback, used as is), WAITING -> RUNNING
  as a row update that fails for a trial already popped (atomic with PostgreSQL's row lock).
- Kept: `storage_lock` around create/enqueue/pop, because SQLite (the default) has no row lock:
  two processes can both read a WAITING trial and one then fails on the write instead of taking
  the next; and because `enqueue_trial(skip_if_exists=True)` compares params only, racing
  enqueues of one grid on a fresh study would both insert. The duplicate guard in `_claim`
  (a second COMPLETE/RUNNING trial of a pair is PRUNED) covers trials enqueued by hand or by an
  older invocation. `_heartbeat`: Optuna beats only inside `Study.optimize`, and the queue pops
  with ask/tell (a grid of enqueued pairs, no sampler), so the thread is ours. The pre-heartbeat
  claim check in `recover_trials`: a worker killed between `ask()` and its first heartbeat leaves
  a RUNNING trial Optuna never sees as stale (tests/test_studies.py kills one there).
"""

from core.study.figure import study_figure
from core.study.grid import (
    ABLATION,
    KINDS,
    LAMBDA_SENSITIVITY,
    RHIC_RATIO,
    GridPoint,
    StudyKind,
    base_params,
    grid,
    study_name,
    trial_params,
)
from core.study.outputs import collect_rows, summarize_points, write_outputs
from core.study.runner import QueueResult, StudyResult, cli, fetch_rows, main, run_queue, run_study
from core.study.storage import (
    create_study,
    end_stale_runs,
    enqueue_grid,
    open_storage,
    open_study,
    recover_trials,
    storage_lock,
    storage_url,
)
from core.study.worker import WorkerContext, WorkerResult, run_worker

__all__ = [
    "ABLATION",
    "KINDS",
    "LAMBDA_SENSITIVITY",
    "RHIC_RATIO",
    "GridPoint",
    "StudyKind",
    "base_params",
    "grid",
    "study_name",
    "trial_params",
    "collect_rows",
    "study_figure",
    "summarize_points",
    "write_outputs",
    "QueueResult",
    "StudyResult",
    "cli",
    "fetch_rows",
    "run_queue",
    "main",
    "run_study",
    "create_study",
    "end_stale_runs",
    "enqueue_grid",
    "open_storage",
    "open_study",
    "recover_trials",
    "storage_lock",
    "storage_url",
    "WorkerContext",
    "WorkerResult",
    "run_worker",
]
