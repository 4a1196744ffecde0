"""Notebooks: real .ipynb files executed by a real Jupyter kernel (ipykernel,
driven by nbclient), whose cells call teleport() or use %%teleport; the
namespace comes back into the kernel for the next cells."""

import asyncio
import re
import subprocess
import sys
import threading
import time

import nbformat
import pytest
from nbclient import NotebookClient

from progs import describe, run_python, write_program

SETUP = """\
import os, numpy as np
import pyteleport
kernel = os.getpid()
data = np.arange(10)

def square(x):
    return x * x

print("kernel", os.getpid() == kernel)"""


def _execute(tmp_path, cells, timeout=180, on_kernel=None):
    """Run ``cells`` in a fresh kernel of this interpreter; the executed notebook."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(tmp_path)}})
    if on_kernel is None:
        client.execute()
    else:
        with client.setup_kernel():
            on_kernel(client)
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
    return nb


def _execute_ok(tmp_path, cells, **kw):
    """:func:`_execute`, every cell ending without an error."""
    nb = _execute(tmp_path, cells, **kw)
    assert [_error(c) for c in nb.cells] == [None] * len(cells), [c.outputs for c in nb.cells]
    return nb


def _text(cell, kind="stream") -> str:
    """What a cell printed (streams), or its displayed results."""
    out = []
    for o in cell.outputs:
        if o.output_type == kind == "stream":
            out.append(o.text)
        elif o.output_type == kind == "execute_result":
            out.append(o.data["text/plain"] + "\n")
    return "".join(out)


def _plain(text: str) -> str:
    """Without terminal colours (3.13+ colour tracebacks when the kernel asks for it)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _error(cell):
    return next((o for o in cell.outputs if o.output_type == "error"), None)


def test_a_cell_moves_and_its_results_come_back(tmp_path):
    nb = _execute_ok(tmp_path, [
        SETUP,
        "x = 5\nprint('before', os.getpid() == kernel)",
        # the third cell moves; the rest of it runs on the target
        "for i in range(2):\n    if i == 1:\n        pyteleport.teleport('local')\n"
        "    print('loop', i, os.getpid() == kernel)\n"
        "y = square(x) + int(data.sum())\ndel x\nprint('moved', os.getpid() == kernel, y)\ny * 2",
        "print('back', os.getpid() == kernel, y, 'x' in dir())",
    ])
    moved = nb.cells[2]
    assert _text(moved).startswith("loop 0 True\nloop 1 False\nmoved False 70\n"), moved.outputs
    assert re.search(r"pyteleport: the cell ran on the local backend \(exit code 0\); \d+ names came "
                     r"back\n", _text(moved)), moved.outputs
    assert _text(moved, "execute_result") == "140\n"      # the last expression, displayed here
    # the fourth cell runs in the kernel and sees what the third made there (x deleted there too)
    assert _text(nb.cells[3]) == "back True 70 False\n"


def test_the_teleport_magic_runs_a_whole_cell_there(tmp_path):
    nb = _execute_ok(tmp_path, [
        SETUP,
        "%load_ext pyteleport",
        "%%teleport local\nz = square(int(data[3]))\nprint('magic', os.getpid() == kernel, z)",
        "print('after', z)",
    ])
    assert _text(nb.cells[2]).startswith("magic False 9\npyteleport: the cell ran on the local backend"), \
        nb.cells[2].outputs
    assert _text(nb.cells[3]) == "after 9\n"


def test_an_exception_there_is_the_cells_error(tmp_path):
    nb = _execute(tmp_path, [
        SETUP,
        "pyteleport.teleport('local')\npartial = 'assigned'\nraise ValueError('failed there ' + str(os.getpid() == kernel))",
        "print('after', partial)",
    ])
    failed = nb.cells[1]
    error = _error(failed)
    assert error is not None and error.ename == "CellFailed", failed.outputs
    assert error.evalue.startswith("the cell ran on the local backend (exit code 1)"), error
    text = _plain("".join(o.get("text", "") for o in failed.outputs if o.output_type == "stream"))
    assert "ValueError: failed there False" in text, failed.outputs           # the target's traceback
    assert "pyteleport" not in text.split("Traceback", 1)[1], text           # the user's frames only
    assert _text(nb.cells[2]) == "after assigned\n"     # what ran before the error came back


def test_what_cannot_travel_is_reported_and_the_rest_returned(tmp_path):
    nb = _execute(tmp_path, [
        SETUP,
        "import socket\nsock = socket.socket()\nkept = [1, 2]\npyteleport.teleport('local')\n"
        "kept.append(3)\nmade = threading_lock = __import__('threading').Lock()\nresult = len(kept)",
        "print('after', kept, result, 'sock' in dir())",
    ])
    moved = nb.cells[1]
    assert _error(moved) is None, moved.outputs
    summary = _text(moved)
    assert "not sent: sock (" in summary and "socket" in summary, summary
    assert _text(nb.cells[2]) == "after [1, 2, 3] 3 True\n"


def test_a_big_array_comes_back(tmp_path):
    nb = _execute(tmp_path, [
        SETUP,
        "pyteleport.teleport('local')\nbig = np.full(500 * 2**20 // 8, 7.0)\nbig[-1] = 1.5",
        "print('big', big.nbytes // 2**20, big[0], big[-1], big.flags.writeable)",
    ])
    assert _text(nb.cells[2]) == "big 500 7.0 1.5 True\n"


@pytest.mark.usefixtures("slurm_cluster")
def test_a_cell_moves_to_a_slurm_job(tmp_path):
    options = {"wait": True, "stage_dir": str(tmp_path / "stage"),
               "output": str(tmp_path / "job-%j.out"), "error": str(tmp_path / "job-%j.err")}
    nb = _execute_ok(tmp_path, [
        SETUP,
        f"pyteleport.teleport('slurm', **{options!r})\n"
        "job = os.environ['SLURM_JOB_ID']\nprint('in job', job, os.getpid() == kernel)",
        "print('back', job.isdigit(), os.getpid() == kernel)",
    ])
    assert re.search(r"in job \d+ False\n", _text(nb.cells[1])), nb.cells[1].outputs
    assert _text(nb.cells[2]) == "back True True\n"


def test_interrupting_the_kernel_reaches_the_target(tmp_path):
    """"Interrupt kernel" while the moved cell runs there: it stops there
    (KeyboardInterrupt in its traceback) and the kernel goes on."""
    marker = tmp_path / "running"

    def interrupt_once_running(client):
        def watch():
            deadline = time.monotonic() + 120
            while not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
            # what "interrupt kernel" does (the manager is asynchronous: its own loop here)
            asyncio.run(client.km.interrupt_kernel())
        threading.Thread(target=watch, daemon=True).start()

    nb = _execute(tmp_path, [
        SETUP,
        f"import time\npyteleport.teleport('local')\nopen({str(marker)!r}, 'w').close()\n"
        "for step in range(600):\n    time.sleep(0.1)",
        "print('kernel alive', os.getpid() == kernel, step < 599)",
    ], on_kernel=interrupt_once_running)
    stopped = nb.cells[1]
    error = _error(stopped)
    assert error is not None and "(exit code 130)" in error.evalue, stopped.outputs
    text = "".join(o.get("text", "") for o in stopped.outputs if o.output_type == "stream")
    assert "KeyboardInterrupt" in text, stopped.outputs
    assert _text(nb.cells[2]) == "kernel alive True True\n"


def test_the_interactive_prompt_refuses_clearly(tmp_path):
    """python -i: the session cannot continue elsewhere; the call says so and
    the session goes on (it used to end silently)."""
    proc = subprocess.run([sys.executable, "-i", "-q"], cwd=tmp_path, text=True, capture_output=True,
                          timeout=60, input="import pyteleport\ntry:\n    pyteleport.teleport()\n"
                          "except pyteleport.TeleportError as e:\n    print('REFUSED', e)\n\n"
                          "print('still here')\n")
    assert "REFUSED" in proc.stdout and "interactive" in proc.stdout, describe(proc)
    assert "still here" in proc.stdout, describe(proc)


def test_ipython_script_runs_as_python_does(tmp_path):
    """``ipython script.py`` moves the script as ``python script.py`` does
    (IPython's history thread stays behind)."""
    prog = write_program(tmp_path, """\
        import os, pyteleport
        start = os.getpid()
        values = [1, 2, 3]
        pyteleport.teleport()
        print("moved", os.getpid() != start, sum(values))
        """)
    proc = run_python(["-m", "IPython", str(prog)], tmp_path)
    assert proc.returncode == 0 and proc.stdout.endswith("moved True 6\n"), describe(proc)
    assert "Traceback" not in proc.stderr, describe(proc)


def test_checkpoint_in_a_cell_resumes_the_rest_of_the_cell_as_a_script(tmp_path):
    """checkpoint() in a cell saves the cell from there on with the user
    namespace; `pyteleport resume` runs the rest of the cell without a
    kernel: the same lines as the kernel printed after the call, and the
    cell's last value."""
    cell = ("total = 0\nfor i in range(5):\n    total += square(i)\n    if i == 2:\n"
            "        print('saved', pyteleport.checkpoint('cell.ckpt'), os.getpid() == kernel)\n"
            "    print('step', i, total)\nnames = sorted(n for n in dir() if not n.startswith('_'))\n"
            "print('after', total + int(data.sum()))\ntotal * 2")
    nb = _execute_ok(tmp_path, [SETUP, "import socket\nunsent = socket.socket()", cell])
    outputs = nb.cells[2].outputs
    errors = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stderr")
    assert "checkpoint of the cell without: unsent (" in errors, outputs
    here = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")
    assert here.startswith("step 0 0\nstep 1 1\nsaved False True\n"), here
    resumed = run_python(["-m", "pyteleport", "resume", tmp_path / "cell.ckpt"], tmp_path)
    assert resumed.returncode == 0, describe(resumed)
    after = here[here.index("saved False True\n") + len("saved False True\n"):]
    assert resumed.stdout == "saved True False\n" + after + _text(nb.cells[2], "execute_result"), \
        describe(resumed)
