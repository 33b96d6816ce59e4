"""Shared entry-point plumbing: `--params`/`--set` parsing and the one-line error contract.

Every script's `main` is wrapped by `run_main`: a `UserError` (bad params, bad data) prints
one line `error: ...` to stderr and exits 2; Ctrl-C exits 130; SIGTERM (a scheduler, `kill`, a
study runner stopping its workers) raises `Terminated` and takes the same path as Ctrl-C, so
runs end KILLED and trials FAIL instead of staying RUNNING, then exits 143 at once (no
interpreter teardown: `exit_at_once`). Anything else is a
bug and keeps its traceback. Inside a dvc stage, the process also watches dvc and takes the
SIGTERM path when dvc is gone (`core.procs.watch_launcher`): a stage never outlives its pipeline.
"""

from __future__ import annotations

import _thread
import argparse
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, NoReturn, Sequence

from core import procs
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


class _Sigterm:
    """This process's SIGTERM state (module-level: there is one handler per process)."""

    raised = False  # a Terminated was raised
    resent = 0  # SIGTERMs this process sent itself again (`_unraisable`), not yet raised
    previous_hook: Callable[[Any], None] = sys.unraisablehook


def _on_sigterm(signum: int, frame: object) -> None:
    if _Sigterm.resent:
        _Sigterm.resent -= 1
    elif _Sigterm.raised:  # a second SIGTERM while the first unwinds: end at once (like kill -9 would)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
    _Sigterm.raised = True
    raise Terminated(f"terminated by signal {signum}")


def _resend() -> None:
    time.sleep(0.05)  # after the hook has returned: into ordinary code
    os.kill(os.getpid(), signal.SIGTERM)


def _unraisable(args: Any) -> None:
    """A Terminated raised while the main thread ran a finalizer or a weakref callback (which torch
    creates by the thousand) is swallowed by Python ("Exception ignored in ..."), and the process
    would train on: send the SIGTERM again, until it lands in ordinary code and unwinds."""
    if isinstance(args.exc_value, Terminated):
        _Sigterm.resent += 1
        _thread.start_new_thread(_resend, ())  # (threading.Thread.start would wait, and could be hit)
        return
    _Sigterm.previous_hook(args)


def install_sigterm_handler() -> None:
    """SIGTERM -> `Terminated` in the main thread (Python delivers signals there only), delivered
    again when Python swallows it (`_unraisable`)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
        if sys.unraisablehook is not _unraisable:
            _Sigterm.previous_hook = sys.unraisablehook
            sys.unraisablehook = _unraisable


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
    install_sigterm_handler()
    if lifeline or procs.in_dvc_stage():
        procs.watch_launcher()
    try:
        code = main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except Terminated:
        print("terminated", file=sys.stderr)
        exit_at_once(128 + signal.SIGTERM)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
