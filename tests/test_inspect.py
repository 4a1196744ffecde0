"""``pyteleport inspect``: what a checkpoint holds and why it is big, told
without running any of it (the state's pickle opcodes are walked, never
unpickled)."""

import json
import os
import sys

from progs import describe, line_of, run_python, write_program

PROGRAM = """\
import os, sys
import numpy
import pyteleport

TABLE = {"weights": numpy.arange(600_000, dtype=numpy.float64), "names": ["n%d" % i for i in range(20_000)]}
BLOB = bytes(range(256)) * 2_000
SHARED = BLOB


class Holder:
    def __init__(self):
        self.cells = [float(i) for i in range(50_000)]
        self.label = "h"


class Trap:
    # rebuilding it makes a directory: inspect must never do that
    def __reduce__(self):
        return (os.mkdir, (os.path.abspath("trap-sprung"),))


def work(n):
    buf = bytearray(3_000_000)
    acc = list(range(n))
    holder = Holder()
    trap = Trap()
    reading = open(sys.argv[0])
    reading.readline()
    writing = open("out.log", "a")
    writing.write("x" * 10)
    print("POSITIONS", reading.tell(), writing.tell(), flush=True)
    if pyteleport.checkpoint(sys.argv[1]):  # CHECKPOINT
        print("RESUMED", len(buf), len(acc), flush=True)
    return n


work(100_000)  # CALL
"""


def _checkpoint(tmp_path):
    prog = write_program(tmp_path, PROGRAM)
    payload = tmp_path / "state.pyteleport"
    proc = run_python([prog, payload], tmp_path)
    assert proc.returncode == 0, describe(proc)
    (reading, writing), = [tuple(map(int, line.split()[1:])) for line in proc.stdout.splitlines()
                           if line.startswith("POSITIONS")]
    return prog, payload, reading, writing


def test_inspect_tells_variables_sizes_largest_objects_modules_and_files(tmp_path):
    prog, payload, reading, writing = _checkpoint(tmp_path)
    proc = run_python(["-m", "pyteleport", "inspect", "--json", payload], tmp_path)
    assert proc.returncode == 0, describe(proc)
    facts = json.loads(proc.stdout)
    assert not (tmp_path / "trap-sprung").exists(), "inspect ran code from the payload"
    assert facts["python"] == "%d.%d" % sys.version_info[:2] and facts["signed"] is True
    assert facts["bytes"] == payload.stat().st_size
    assert [f["where"] for f in facts["frames"]] == [
        f"{prog}:{line_of(prog, '# CALL')}, in <module>", f"{prog}:{line_of(prog, '# CHECKPOINT')}, in work"]
    variables = {v["name"]: v for v in facts["frames"][-1]["variables"]}
    assert {"n", "buf", "acc", "holder", "trap", "reading", "writing"} <= set(variables), variables
    assert variables["buf"]["type"] == "bytearray" and 3_000_000 <= variables["buf"]["bytes"] < 3_000_100
    assert variables["acc"]["type"] == "list" and 100_000 * 2 < variables["acc"]["bytes"] < 100_000 * 6
    assert variables["holder"]["type"] == "__main__.Holder" and variables["holder"]["bytes"] > 50_000 * 9
    assert variables["reading"]["type"] == "_io.TextIOWrapper"
    assert variables["n"] == {"name": "n", "type": "int", "bytes": variables["n"]["bytes"]}
    globs = {g["name"]: g for g in facts["globals"]}
    assert globs["TABLE"]["type"] == "dict" and globs["TABLE"]["bytes"] > 600_000 * 8
    assert globs["BLOB"]["type"] == "bytes" and globs["BLOB"]["bytes"] >= 512_000
    # one object under two names: its size under each, stored once
    assert globs["SHARED"]["bytes"] == globs["BLOB"]["bytes"]
    assert facts["buffer_bytes"] == 600_000 * 8 + 3_000_000 + 512_000
    largest = [(o["type"], o["path"]) for o in facts["largest"]]
    assert largest[:2] == [("numpy.ndarray", "global TABLE['weights']"),
                           ("bytearray", f"{facts['frames'][-1]['where']}: buf")], largest
    assert ("list", f"{facts['frames'][-1]['where']}: holder.cells") in largest, largest
    assert ("bytes", "global BLOB") in largest, largest
    sizes = [o["bytes"] for o in facts["largest"]]
    assert sizes == sorted(sizes, reverse=True)
    assert "numpy" in facts["modules"] and "posix" in facts["modules"], facts["modules"]
    files = {os.path.basename(f["path"]): f for f in facts["files"]}
    assert files["prog.py"]["mode"] == "r" and files["prog.py"]["position"] == reading
    assert files["out.log"]["mode"] == "a" and files["out.log"]["position"] == writing
    # the text says the same
    text = run_python(["-m", "pyteleport", "inspect", payload], tmp_path)
    assert text.returncode == 0, describe(text)
    assert "      buf: bytearray, 2.9 MiB" in text.stdout, text.stdout
    assert "numpy.ndarray at global TABLE['weights']" in text.stdout, text.stdout
    # as the program named it: reopened relative to the directory it resumes in
    assert f"  out.log (mode 'a', position {writing})" in text.stdout, text.stdout
    assert not (tmp_path / "trap-sprung").exists(), "inspect ran code from the payload"
    # and the payload does hold that code: resuming it runs it
    resumed = run_python(["-m", "pyteleport", "resume", payload], tmp_path)
    assert resumed.returncode == 0 and "RESUMED 3000000 100000" in resumed.stdout, describe(resumed)
    assert (tmp_path / "trap-sprung").is_dir()


DEEP = """\
import sys
import pyteleport


class Link:
    __slots__ = ("next",)

    def __init__(self, nxt):
        self.next = nxt


def hold():
    chain = None
    for _ in range(40_000):       # deeper than the pickler recurses: the deep mode
        chain = Link(chain)
    pyteleport.checkpoint(sys.argv[1])
    return chain


hold()
"""


def test_inspect_a_payload_of_the_deep_mode(tmp_path):
    prog = write_program(tmp_path, DEEP)
    payload = tmp_path / "deep.pyteleport"
    proc = run_python([prog, payload], tmp_path)
    assert proc.returncode == 0, describe(proc)
    proc = run_python(["-m", "pyteleport", "inspect", "--json", payload], tmp_path)
    assert proc.returncode == 0, describe(proc)
    facts = json.loads(proc.stdout)
    assert "analysis_error" not in facts
    assert facts["deferred_bytes"] > 40_000 * 2, facts["deferred_bytes"]
    chain, = [v for v in facts["frames"][-1]["variables"] if v["name"] == "chain"]
    assert chain["type"] == "__main__.Link"


def test_inspect_an_unsigned_payload_whose_state_is_not_a_pickle(tmp_path):
    """A payload from a pipe has a checksum, no signature: inspect reads it
    too; a state that is not a pickle stream is said, the rest still shown."""
    import pickle
    from pyteleport._payload.container import Payload
    context = pickle.dumps({"cwd": b"/somewhere", "argv": ["x.py"], "frames": ["x.py:1, in <module>"]})
    path = tmp_path / "odd.pyteleport"
    with open(path, "wb") as f:
        Payload(context, b"\x80\x05\x94\x94\x94garbage").write_to(f)
    for extra in ([], ["--json"]):
        proc = run_python(["-m", "pyteleport", "inspect", *extra, path], tmp_path)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, describe(proc)
        assert "the program state could not be analysed" in proc.stdout, describe(proc)
        assert "NOT signed" in proc.stdout or '"signed": false' in proc.stdout, describe(proc)


def test_the_walk_sizes_every_object_in_every_protocol():
    import pickle
    from pyteleport._payload import anatomy
    value = {"rows": [bytes(1000), "t" * 500, (1, 2.5, None)], "set": {1, 2}, "twice": None}
    value["twice"] = value["rows"]          # a memo reference: the same node, sized once
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps(value, protocol=protocol)
        tree = anatomy.walk(data, [])
        root, = tree.roots
        framing = 2 + (9 if protocol >= 4 else 0) if protocol >= 2 else 0   # PROTO, FRAME
        assert root.size == len(data) - framing - 1, protocol                # all but STOP
        items = dict(root.items())
        assert items["twice"] is items["rows"], protocol
        rows = [n for _, n in items["rows"].children]
        assert 500 < rows[1].size < 510, protocol
        if protocol >= 3:       # before 3, bytes are a call of _codecs.encode on escaped text
            assert 1000 < rows[0].size < 1010, protocol
        assert anatomy.type_of(items["rows"]) == "list"
