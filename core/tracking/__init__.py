"""MLflow tracking for every stage: one experiment, one run per trained model, nested under a suite.

Every stage uses this package as `from core import tracking` and the names below; each idea has
its module:

- `store`: where runs are kept (MLFLOW_TRACKING_URI > params.tracking.uri >
  sqlite:///<outputs>/mlflow.db), the experiment created once under a file lock, `ui_link`;
- `names`: the tags the suite writes, and names and values made acceptable to MLflow;
- `provenance`: the tags every run carries (suite, profiles, git commit, data source, environment);
- `run`: one tracked run (`tracked_run`: params, tags, config artifact, FINISHED / FAILED / KILLED),
  logging into it (`RunHandle`), ending an open one (`end_run`, `run_span`), finding a FINISHED
  run of a config hash again (`find_finished_run`) and copying its files (`download_artifacts`);
- `parents`: a suite's or a study's parent run, RUNNING until its table is written, reopened
  by a resumed suite;
- `stale`: no run is left RUNNING by a dead process: a SIGKILLed run is ended by the next run of
  its config on its host (its owner's liveness: `core.procs`) or by the study machinery.
"""

from core.tracking.names import (
    CONFIG_ARTIFACT,
    TAG_CONFIG_HASH,
    TAG_ERROR,
    TAG_OWNER,
    TAG_PARENT_KEY,
    TAG_PARENT_RUN_ID,
    TAG_REPLACES,
    mlflow_name,
)
from core.tracking.parents import start_parent_run
from core.tracking.provenance import (
    TAG_DATA_SOURCE,
    TAG_ENV,
    TAG_GIT_COMMIT,
    TAG_PROFILES,
    TAG_SUITE,
    env_tags,
    git_commit,
)
from core.tracking.run import (
    RunHandle,
    download_artifacts,
    end_run,
    find_finished_run,
    run_handle,
    run_span,
    tracked_run,
)
from core.tracking.stale import end_running_runs
from core.tracking.store import init_tracking, sqlite_path, tracking_uri, ui_link

__all__ = [
    "CONFIG_ARTIFACT",
    "TAG_CONFIG_HASH",
    "TAG_DATA_SOURCE",
    "TAG_ENV",
    "TAG_ERROR",
    "TAG_GIT_COMMIT",
    "TAG_OWNER",
    "TAG_PARENT_KEY",
    "TAG_PARENT_RUN_ID",
    "TAG_PROFILES",
    "TAG_REPLACES",
    "TAG_SUITE",
    "RunHandle",
    "download_artifacts",
    "end_run",
    "end_running_runs",
    "env_tags",
    "find_finished_run",
    "git_commit",
    "init_tracking",
    "mlflow_name",
    "run_handle",
    "run_span",
    "sqlite_path",
    "start_parent_run",
    "tracked_run",
    "tracking_uri",
    "ui_link",
]
