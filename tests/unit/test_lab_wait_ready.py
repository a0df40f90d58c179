"""pylvs.lab.netns.wait_ready and file_tail on plain processes (no namespaces, no privileges)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest

from pylvs.lab.netns import LabError, file_tail, wait_ready


@pytest.fixture
def spawn(tmp_path):
    procs = []

    def start(script: str):
        path = tmp_path / f"{len(procs)}.stderr"
        with open(path, "wb") as errf:
            p = subprocess.Popen(["sh", "-c", script], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=errf, text=True, start_new_session=True)
        procs.append(p)
        return p, str(path)
    yield start
    for p in procs:  # the shell and its sleep (which holds the pipe too)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.communicate(timeout=5)


def test_ready_among_lines_that_arrive_together(spawn):
    # Three lines in one write: a select()+readline() loop would find "a", then block in select() while
    # "b" and "ready" sit in the file object's buffer.
    p, _ = spawn("printf 'a\\nb\\nready\\n'; sleep 30")
    t = time.monotonic()
    wait_ready(p, 5)
    assert time.monotonic() - t < 2


def test_ready_split_across_writes_and_pylvs_form(spawn):
    p, _ = spawn("printf 're'; sleep 0.2; printf 'ady\\n'; sleep 30")
    wait_ready(p, 5)
    q, _ = spawn("echo 'pylvs: ready (2 ports)'; sleep 30")
    wait_ready(q, 5)
    r, _ = spawn("echo 'not ready'; echo already; sleep 30")  # only a line starting with the word counts
    with pytest.raises(LabError, match="not ready within"):
        wait_ready(r, 0.5)


def test_exit_before_ready_names_it_with_the_tail(spawn):
    p, path = spawn("echo starting; echo boom >&2; exit 3")
    with pytest.raises(LabError, match=r"^my server exited \(3\) before ready; stdout \['starting'\]\nboom") as ei:
        wait_ready(p, 5, "my server", tail=lambda: file_tail(path))
    assert "Traceback" not in str(ei.value)


def test_timeout_is_bounded(spawn):
    p, _ = spawn("sleep 30")
    t = time.monotonic()
    with pytest.raises(LabError, match=r"^sh -c sleep 30 not ready within 0\.3 s"):
        wait_ready(p, 0.3)
    assert time.monotonic() - t < 2


def test_needs_a_stdout_pipe():
    p = subprocess.Popen(["true"])
    p.wait()
    with pytest.raises(LabError, match="stdout=subprocess.PIPE"):
        wait_ready(p, 1)


def test_file_tail(tmp_path):
    f = tmp_path / "log"
    f.write_bytes(b"x" * 5000 + b"end \xff")
    assert file_tail(str(f), 6) == "\x78end \ufffd"[-6:]
    assert len(file_tail(str(f))) == 2000
    assert file_tail(str(tmp_path / "missing")) == ""
