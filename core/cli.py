"""Shared entry-point plumbing: `--params`/`--set` parsing and the one-line error contract.

Every script's `main` is wrapped by `run_main`: a `UserError` (bad params, bad data) prints
one line `error: ...` to stderr and exits 2; Ctrl-C exits 130; SIGTERM (a scheduler, `kill`, a
study runner stopping its workers) raises `Terminated` and takes the same path as Ctrl-C, so
runs end KILLED and trials FAIL instead of staying RUNNING, then exits 143. Anything else is a
bug and keeps its traceback. Inside a dvc stage, the process also watches dvc and takes the
SIGTERM path when dvc is gone (`core.procs.watch_launcher`): a stage never outlives its pipeline.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Callable, Sequence

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


def _on_sigterm(signum: int, frame: object) -> None:
    # once: a second SIGTERM while the first unwinds ends the process at once (like kill -9 would)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated(f"terminated by signal {signum}")


def install_sigterm_handler() -> None:
    """SIGTERM -> `Terminated` in the main thread (Python delivers signals there only)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


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
        sys.exit(128 + signal.SIGTERM)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
