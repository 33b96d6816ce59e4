"""core.procs: owners of this host, and the lifeline that ends a stage with its launcher; and
the SIGTERM path (core.cli, core.signals), which the lifeline takes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import procs

# an entry point that waits forever; says where it is, and prints 'unwound' when it unwinds
CHILD = """
import os, sys, time
from pathlib import Path
from core.cli import run_main

def main(argv):
    Path(sys.argv[1]).write_text(str(os.getpid()))
    try:
        while True:
            time.sleep(0.05)
    finally:
        print("unwound", flush=True)

run_main(main)
"""
# the launcher: starts CHILD through a shell that does not exec it (`; true`), as dvc may, and waits
LAUNCHER = """
import shlex, subprocess, sys
child = shlex.join([sys.executable, "-c", sys.argv[1], sys.argv[2]]) + f" > {shlex.quote(sys.argv[3])} 2>&1; true"
subprocess.run(["sh", "-c", child])
"""


def _alive(pid: int) -> bool:
    return procs.process_start(pid) is not None


def _start(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen, int, Path]:
    pid_file, out = tmp_path / "child.pid", tmp_path / "child.out"
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, CHILD, str(pid_file), str(out)], env=env)
    deadline = time.time() + 60
    while not (pid_file.is_file() and pid_file.read_text()):
        assert launcher.poll() is None and time.time() < deadline, "the child never started"
        time.sleep(0.05)
    return launcher, int(pid_file.read_text()), out


def test_a_dvc_stage_stops_as_on_sigterm_when_its_launcher_dies_behind_a_shell(tmp_path):
    """DVC_STAGE set (what dvc sets for a stage): the launcher SIGKILLed, the shell between them
    still alive; the stage takes the SIGTERM path within seconds (unwinds, prints 'terminated')."""
    launcher, child, out = _start(tmp_path, os.environ | {"DVC_STAGE": "ablate"})
    launcher.kill()
    launcher.wait()
    deadline = time.time() + 10
    while _alive(child):
        assert time.time() < deadline, "the stage outlived its launcher by 10 s"
        time.sleep(0.1)
    text = out.read_text()
    assert "unwound" in text and text.strip().endswith("terminated"), text
    assert "which started this process, is gone: stopping as on SIGTERM" in text


def test_outside_a_stage_a_process_outlives_its_launcher(tmp_path):
    """No DVC_STAGE: `nohup python studies/... &` from a shell that then exits must keep running."""
    env = {k: v for k, v in os.environ.items() if k != "DVC_STAGE"}
    launcher, child, out = _start(tmp_path, env)
    launcher.kill()
    launcher.wait()
    time.sleep(2.5)  # more than two lifeline polls
    try:
        assert _alive(child)
    finally:
        os.kill(child, signal.SIGKILL)


def test_owner_gone_tells_a_dead_local_process_from_a_live_one_and_never_judges_other_hosts():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = f"{socket.gethostname()}:{proc.pid}:{procs.process_start(proc.pid)}"
        assert not procs.owner_gone(live)
        assert procs.owner_gone(live.rsplit(":", 1)[0] + ":1")  # its pid, another start: a new process
    finally:
        proc.kill()
        proc.wait()
    assert procs.owner_gone(live)
    assert not procs.owner_gone(f"some-other-host:{proc.pid}:1")
    assert not procs.owner_gone(procs.owner()) and procs.owner_host(procs.owner()) == socket.gethostname()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_the_launcher_is_the_first_ancestor_that_is_not_a_shell():
    code = "from core import procs; import os; print(procs.launcher()[0], os.getppid())"
    out = subprocess.run(
        ["sh", "-c", f"{sys.executable} -c '{code}'; true"], capture_output=True, text=True, check=True
    ).stdout.split()
    launcher, parent = int(out[0]), int(out[1])
    assert parent != os.getpid() and launcher == os.getpid()  # past the shell, to this test's process


# a SIGTERM that lands inside a weakref callback, where Python swallows an exception a signal
# handler raises ("Exception ignored in ..."): torch's autograd creates such callbacks by the thousand
SWALLOWED = """
import sys, time, weakref
from core.cli import run_main

class Thing:
    pass

def busy(_ref):
    print("in the callback", flush=True)
    end = time.time() + 1.0
    while time.time() < end:
        pass

def main(argv):
    try:
        while True:
            thing = Thing()
            ref = weakref.ref(thing, busy)
            del thing  # busy() runs here
            time.sleep(0.5)  # ordinary work
    finally:
        print("unwound", flush=True)

run_main(main)
"""


def test_a_sigterm_swallowed_in_a_weakref_callback_is_delivered_again():
    proc = subprocess.Popen(
        [sys.executable, "-c", SWALLOWED], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline() == "in the callback\n"
        proc.send_signal(signal.SIGTERM)  # lands in busy()
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM and out == "unwound\n", (out, err)
    assert err.strip().endswith("terminated") and "Exception ignored" not in err, err
