"""Shared entry-point plumbing: `--params`/`--set` parsing and the one-line error contract.

Every script's `main` is wrapped by `run_main`: a `UserError` (bad params, bad data) prints
one line `error: ...` to stderr and exits 2; Ctrl-C exits 130; SIGTERM (a scheduler, `kill`, a
study runner stopping its workers) raises `Terminated` and takes the same path as Ctrl-C, so
runs end KILLED and trials FAIL instead of staying RUNNING, then exits 143 at once (no
interpreter teardown: `exit_at_once`). Where either is raised: `core.signals`. Anything else is
a bug and keeps its traceback. Whatever the exit, a run this process opened and did not end is
ended then (`core.tracking.run.end_open_runs`). Inside a dvc stage, the process also watches dvc
and takes the SIGTERM path when dvc is gone (`core.procs.watch_launcher`): a stage never outlives
its pipeline.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from types import ModuleType
from typing import Callable, NoReturn, Sequence

from core import procs, signals
from core.config import Params, load_params
from core.errors import Terminated, UserError

log = logging.getLogger("cvls")


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a params key, validated like the file (repeatable), e.g. --set loss.lcf=false",
    )
    return p


def params_from(args: argparse.Namespace) -> Params:
    return load_params(args.params, args.overrides)


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")


def exit_at_once(code: int) -> NoReturn:
    """Exit without the interpreter's teardown. For a stopped process whose unwinding already ran
    every `finally` (runs KILLED, trials FAIL, locks released, temp files removed): tearing down
    torch, MLflow and the rest takes seconds on a loaded machine, and a stopped stage is to be gone
    at once (measured on a loaded 2-core machine: ~4 s of a study worker's ~5 between SIGTERM and
    exit)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say
            pass
    os._exit(code)


def run_main(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None, *, lifeline: bool = False
) -> None:
    """Run an entry point under the one-line error contract. `lifeline`: stop (as on SIGTERM) when
    the process that started this one is gone; always on inside a dvc stage."""
    setup_logging()
    signals.install()
    if lifeline or procs.in_dvc_stage():
        procs.watch_launcher()
    before = set(run.open_runs()) if (run := _tracking_run()) else set()
    try:
        code = main(argv)
    except BaseException as err:
        _end_open_runs(err, before)
        if isinstance(err, UserError):
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        if isinstance(err, Terminated):
            print("terminated", file=sys.stderr)
            exit_at_once(128 + signal.SIGTERM)
        if isinstance(err, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        raise  # a bug: its traceback
    _end_open_runs(None, before)
    sys.exit(code or 0)


def _tracking_run() -> ModuleType | None:
    """core.tracking.run if this process loaded it (if not, it opened no run)."""
    return sys.modules.get("core.tracking.run")


def _end_open_runs(err: BaseException | None, before: set[str]) -> None:
    """The runs this entry point opened and did not end, however it ends: a signal that fell
    between two statements, an error no handler saw. (`before`: runs open when it started, e.g.
    by a test that called it in-process: not its own.)"""
    if run := _tracking_run():
        run.end_open_runs(err, keep=before)
