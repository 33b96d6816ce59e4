"""Processes of this host: who owns a run or a trial, whether it still runs, and the lifeline
that ends a stage with the process that started it.

- Owner: "host:pid:start" (start = the process's start time in clock ticks since boot, from
  /proc), so a dead owner is told from a new process that got its pid. MLflow runs carry it
  (core.tracking's cvls.owner tag) and so do claimed study trials (core.study.worker).
- `owner_gone`: the owner is a process of THIS host that no longer runs. Processes of other
  hosts cannot be seen from here: they are never "gone" (the study's heartbeats cover them).
- `watch_launcher`: a thread that sends this process SIGTERM once the process that started it
  is gone, so it unwinds exactly as on `kill` (core.cli: the trial FAIL, the run KILLED, exit
  143). A dvc stage watches dvc (a container runtime or a scheduler may signal dvc alone, which
  then exits at once and would leave its stage training, re-parented to init); a study's worker
  watches its study process; an extraction worker its extraction. The launcher is the parent,
  or, when the parent is a shell (`$SHELL -c "python ..."`, as dvc runs a stage, keeps the
  shell when it does not exec), the nearest ancestor that is not one. It is gone when this
  process is re-parented or the launcher's pid no longer runs the process that started us.
  A polling thread (twice a second) rather than Linux's PR_SET_PDEATHSIG: that signal fires when the parent
  THREAD that forked exits, and it cannot see past a shell in between.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from pathlib import Path

log = logging.getLogger("cvls")

SHELLS = frozenset({"sh", "ash", "bash", "dash", "zsh", "ksh", "mksh", "fish", "busybox"})
POLL_S = 0.5

_watching = False
_watch_lock = threading.Lock()


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat fields after the command name (state first), None when unreadable."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _has_procfs() -> bool:
    return Path("/proc/self/stat").exists()


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc), None when it does not exist or
    is a zombie; '' where /proc is absent (then only whether the pid exists is known)."""
    if not _has_procfs():  # e.g. macOS: fall back to kill(pid, 0)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ""
    fields = _stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def owner() -> str:
    """This process as an owner: 'host:pid:start'."""
    return f"{socket.gethostname()}:{os.getpid()}:{process_start(os.getpid()) or ''}"


def owner_host(owner_: str | None) -> str | None:
    parts = (owner_ or "").rsplit(":", 2)
    return parts[0] if len(parts) == 3 else None


def owner_gone(owner_: str | None) -> bool:
    """Whether `owner_` names a process of this host that no longer runs (other hosts, or an
    unparsable owner: False, since their processes cannot be seen from here)."""
    parts = (owner_ or "").rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    if int(parts[1]) == os.getpid():
        return False  # this process (e.g. an outer run): alive by definition
    start = process_start(int(parts[1]))
    # gone, or its pid now belongs to a process started at another time
    return start is None or (bool(start) and bool(parts[2]) and start != parts[2])


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def launcher() -> tuple[int, str | None, str]:
    """(pid, start, name) of the process that started this one: the parent, or past any shells
    between (see the module docstring). Without /proc: the parent, start unknown."""
    pid = os.getppid()
    if not _has_procfs():
        return pid, None, ""
    while pid > 1 and _comm(pid) in SHELLS:
        fields = _stat(pid)
        if fields is None:
            break
        pid = int(fields[1])  # its parent
    return pid, process_start(pid), _comm(pid)


def watch_launcher(poll_s: float = POLL_S) -> bool:
    """Start the lifeline thread (once per process); False when there is no launcher to watch
    (started by init, or already re-parented to it)."""
    global _watching
    with _watch_lock:
        if _watching:
            return True
        parent = os.getppid()
        if parent <= 1:
            return False
        pid, start, name = launcher()
        if pid <= 1:  # shells up to init: the parent shell is all there is to watch
            pid, start, name = parent, process_start(parent), _comm(parent)
        _watching = True

    def gone() -> bool:
        if os.getppid() != parent:  # re-parented: the parent died
            return True
        return start is not None and process_start(pid) != start

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(poll_s):
            if gone():
                who = f"{name or 'process'} (pid {pid})"
                log.warning("%s, which started this process, is gone: stopping as on SIGTERM", who)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="cvls-lifeline", daemon=True).start()
    return True


def in_dvc_stage() -> bool:
    """Whether this process runs a dvc stage (dvc sets DVC_STAGE for every stage command)."""
    return bool(os.environ.get("DVC_STAGE"))
