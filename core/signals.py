"""Ctrl-C and SIGTERM: raised in the main thread only where unwinding is safe, and never lost.

Python raises a signal handler's exception at whatever line the main thread runs. Inside a call
into the tracking or study store (MLflow, Optuna, SQLAlchemy, alembic) that is not safe: the
SQLite connection is left holding the write lock, so the run that should end KILLED cannot be
written ("database is locked"), or a run is created whose id never reaches the code that would
end it. Inside pydantic (where the params' Path fields are serialized) the exception is turned into
another one, a serialization error, and the process exits 1 with a traceback. Measured on a
process that opens and ends runs back to back, SIGTERM at a random moment: 15 of 40 left a run
RUNNING or exited 1 before this module, 0 of 60 after (tests/test_signals.py sends it 12).

Once `install`ed (core.cli.run_main does it for every script):
- SIGINT raises KeyboardInterrupt and SIGTERM `core.errors.Terminated` (a KeyboardInterrupt: the
  same unwinding, another exit code), but only while no frame of those packages is on the main
  thread's stack and no `held()` block is open. Until then the signal is pending: delivered again
  to the main thread every 10 ms, and raised at the end of the `held()` block;
- one that Python swallowed (raised inside a finalizer or a weakref callback, which torch creates
  by the thousand: "Exception ignored in ...") is delivered again the same way;
- a second signal while the first is pending or unwinding ends the process at once (the signal's
  default action): the way out of a store call that hangs, as a user pressing Ctrl-C twice expects.
  Not within a second of the first: that is the same stop reaching the process twice (Slurm
  signals every process of a job step, and the study process then stops its workers too).
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from types import FrameType
from typing import Any, Callable, Iterator, NoReturn

from core.errors import Terminated

# packages no signal's exception may be raised in: the stores of MLflow and Optuna hold a database
# transaction while they run; pydantic turns an exception raised in a serializer into its own
GUARDED_PACKAGES = frozenset({"mlflow", "optuna", "sqlalchemy", "alembic", "pydantic", "pydantic_core"})
RETRY_S = 0.01
SAME_STOP_S = 1.0  # a second signal sooner than this after the first is the same stop
HANDLED = (signal.SIGINT, signal.SIGTERM)


class _State:
    """This process's signal state (module-level: there is one handler per process)."""

    signum = 0  # the signal pending or unwinding
    first_at = 0.0  # when it arrived (time.monotonic)
    pending = False  # caught, not raised yet
    unwinding = False  # raised
    redelivered = 0  # re-deliveries sent (at most one at a time) and not handled yet
    depth = 0  # open held() blocks in the main thread
    previous_hook: Callable[[Any], None] = sys.unraisablehook


def _exception(signum: int) -> KeyboardInterrupt:
    if signum == signal.SIGTERM:
        return Terminated(f"terminated by signal {signum}")
    return KeyboardInterrupt()


def in_guarded(frame: FrameType | None) -> bool:
    """Whether a frame of a guarded package is on this stack (from `frame` down)."""
    while frame is not None:
        if frame.f_globals.get("__name__", "").partition(".")[0] in GUARDED_PACKAGES:
            return True
        frame = frame.f_back
    return False


def _redeliver(main: int) -> None:
    """Thread: deliver the pending signal to the main thread again, every RETRY_S until raised.
    A real signal (not _thread.interrupt_main) so that a blocking call there is interrupted."""
    while _State.pending:
        time.sleep(RETRY_S)
        if _State.pending and not _State.redelivered:
            _State.redelivered += 1
            signal.pthread_kill(main, _State.signum)


def _defer() -> None:
    if not _State.pending:
        _State.pending = True
        # not threading.Thread: its start() waits on a lock, and this runs inside a signal handler
        _thread.start_new_thread(_redeliver, (threading.main_thread().ident,))


def _raise() -> NoReturn:
    _State.pending, _State.unwinding = False, True
    raise _exception(_State.signum)


def _handle(signum: int, frame: FrameType | None) -> None:
    redelivered = _State.redelivered > 0
    if redelivered:
        _State.redelivered -= 1
        if not _State.pending:
            return  # it was raised meanwhile (at the end of a held() block)
    elif _State.pending or _State.unwinding:
        if time.monotonic() - _State.first_at < SAME_STOP_S:
            return  # the same stop, twice
        signal.signal(signum, signal.SIG_DFL)  # a second signal: its default action, at once
        os.kill(os.getpid(), signum)
        return
    else:
        _State.signum, _State.first_at = signum, time.monotonic()
    if _State.depth or in_guarded(frame):
        _defer()
        return
    _raise()


def _unraisable(args: Any) -> None:
    """The signal's exception, swallowed by Python in a finalizer: pending again."""
    if isinstance(args.exc_value, KeyboardInterrupt) and _State.unwinding:
        _State.unwinding = False
        _defer()
        return
    _State.previous_hook(args)


def install() -> None:
    """The handlers for SIGINT and SIGTERM (from the main thread only: Python delivers signals there)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in HANDLED:
        signal.signal(signum, _handle)
    if sys.unraisablehook is not _unraisable:
        _State.previous_hook = sys.unraisablehook
        sys.unraisablehook = _unraisable


@contextmanager
def held() -> Iterator[None]:
    """A block no signal interrupts: one that arrives meanwhile is raised at its end. For steps
    that must happen together (a run created and recorded as open). Main thread only; elsewhere
    (and without `install`) a plain block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _State.depth += 1
    try:
        yield
    finally:
        _State.depth -= 1
    if not _State.depth and _State.pending:
        _raise()
