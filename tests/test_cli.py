"""checkpoint() payload files and the command line: resume, inspect, bad payloads."""

import os
import random
import shutil
import stat
import sys

import pytest

from progs import console_script, describe, line_of, run, run_python, write_program

PROGRAM = """\
import os, sys
import pyteleport


def inner_fn(v):
    token = v * 2
    print("START", flush=True)
    if pyteleport.checkpoint(sys.argv[1]):  # CHECKPOINT
        print("RESUMED", token, flush=True)
        return "resumed"
    print("WRITTEN", flush=True)
    return "written"


def outer_fn():
    return inner_fn(21)  # CALL


print("RESULT", outer_fn(), flush=True)
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """(program path, payload path, output of the source run): made once per module."""
    base = tmp_path_factory.mktemp("checkpoint")
    prog = write_program(base, PROGRAM)
    payload_dir = base / "payload"
    payload_dir.mkdir()
    payload = payload_dir / "state.bin"
    proc = run_python([prog, payload], base)
    assert proc.returncode == 0, describe(proc)
    return prog, payload, proc


def test_checkpoint_returns_false_in_the_source(checkpoint):
    prog, payload, proc = checkpoint
    assert proc.stdout.splitlines() == ["START", "WRITTEN", "RESULT written"], describe(proc)


def test_payload_is_private_and_written_atomically(checkpoint):
    prog, payload, proc = checkpoint
    assert payload.is_file()
    assert stat.S_IMODE(payload.stat().st_mode) == 0o600
    # no temporary file left next to it
    assert sorted(p.name for p in payload.parent.iterdir()) == [payload.name]


def _resume_ok(proc):
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.splitlines() == ["RESUMED 42", "RESULT resumed"], describe(proc)


def test_resume_with_python_m(checkpoint, tmp_path):
    prog, payload, _ = checkpoint
    _resume_ok(run_python(["-m", "pyteleport", "resume", payload], tmp_path))


def test_resume_with_console_script(checkpoint, tmp_path):
    prog, payload, _ = checkpoint
    script = console_script()
    assert script.exists(), f"console script {script} is not installed"
    _resume_ok(run([script, "resume", payload], tmp_path))


@pytest.mark.parametrize("how", ["python -m", "console script"])
def test_inspect(checkpoint, tmp_path, how):
    prog, payload, _ = checkpoint
    cmd = [sys.executable, "-m", "pyteleport"] if how == "python -m" else [console_script()]
    before = payload.read_bytes()
    proc = run([*cmd, "inspect", payload], tmp_path)
    info = describe(proc)
    assert proc.returncode == 0, info
    out = proc.stdout
    assert "RESUMED" not in out and "RESULT" not in out, "inspect must not run the program" + info
    assert "%d.%d" % sys.version_info[:2] in out, info
    for func in ("inner_fn", "outer_fn", "<module>"):
        assert func in out, func + info
    assert f"prog.py:{line_of(prog, '# CHECKPOINT')}" in out, info
    assert f"prog.py:{line_of(prog, '# CALL')}" in out, info
    assert payload.read_bytes() == before, "inspect must not change the payload"


def _corrupt(data: bytes, kind: str) -> bytes:
    if kind == "truncated_half":
        return data[: len(data) // 2]
    if kind == "truncated_last_byte":
        return data[:-1]
    if kind == "corrupted_middle_byte":
        mid = len(data) // 2
        return data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :]
    if kind == "random_bytes":
        return random.Random(1234).randbytes(4096)
    if kind == "text_file":
        return b"print('this is not a payload')\n"
    if kind == "empty":
        return b""
    raise AssertionError(kind)


def _assert_rejected(proc, extra=""):
    info = describe(proc)
    assert proc.returncode == 2, info
    err = proc.stderr.strip()
    assert err, "an error message is expected on stderr" + info
    assert len(err.splitlines()) == 1, "the error must be a single line" + info
    assert "Traceback" not in err, info
    assert "RESUMED" not in proc.stdout and "RESULT" not in proc.stdout, (
        "nothing of the program may run" + info
    )
    assert "START" not in proc.stdout and "WRITTEN" not in proc.stdout, info
    if extra:
        assert extra in err, info


# what each kind of bad file is called in the one-line error
BAD = {
    "truncated_half": "truncated or corrupted payload",
    "truncated_last_byte": "truncated or corrupted payload",
    "corrupted_middle_byte": "payload",
    "random_bytes": "not a pyteleport payload",
    "text_file": "not a pyteleport payload",
    "empty": "not a pyteleport payload (an empty file)",
}


@pytest.mark.parametrize("kind", BAD)
def test_resume_rejects_bad_payload(checkpoint, tmp_path, kind):
    prog, payload, _ = checkpoint
    bad = tmp_path / "bad.bin"
    bad.write_bytes(_corrupt(payload.read_bytes(), kind))
    _assert_rejected(run_python(["-m", "pyteleport", "resume", bad], tmp_path), BAD[kind])


def test_resume_of_a_script_says_it_is_not_a_payload(checkpoint, tmp_path):
    prog, _, _ = checkpoint
    _assert_rejected(run_python(["-m", "pyteleport", "resume", prog], tmp_path), "not a pyteleport payload")


@pytest.mark.parametrize("args, shows", [
    (["--help"], "usage: pyteleport resume [--key FILE] PATH"),
    (["-h"], "pyteleport COMMAND --help"),
    (["resume", "--help"], "Continue the program saved in PATH"),
    (["inspect", "-h"], "Nothing of the file is executed"),
    (["--version"], "pyteleport 0."),
])
def test_help_and_version_go_to_stdout(tmp_path, args, shows):
    proc = run_python(["-m", "pyteleport", *args], tmp_path)
    assert proc.returncode == 0 and shows in proc.stdout and not proc.stderr, describe(proc)


@pytest.mark.parametrize("args, says", [
    ([], "usage: pyteleport resume"),
    (["frobnicate"], "unknown command 'frobnicate': the commands are resume, inspect, follow"),
    (["resume"], "pyteleport resume: give one PATH"),
    (["inspect", "a", "b"], "pyteleport inspect: one PATH only, not 2: a b"),
    (["resume", "--kee", "k", "p"], "pyteleport resume: unknown option '--kee'"),
])
def test_bad_command_lines_say_what_is_wrong(tmp_path, args, says):
    proc = run_python(["-m", "pyteleport", *args], tmp_path)
    assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr, describe(proc)
    assert not proc.stdout, describe(proc)


def test_resume_rejects_other_python_version(checkpoint, tmp_path):
    from pyteleport._payload.container import rewrite_python_version

    prog, payload, _ = checkpoint
    other = tmp_path / "other.bin"
    shutil.copyfile(payload, other)
    os.chmod(other, 0o600)
    rewrite_python_version(str(other), (3, 99))
    assert other.read_bytes() != payload.read_bytes()
    _assert_rejected(run_python(["-m", "pyteleport", "resume", other], tmp_path), extra="3.99")


def test_console_script_rejects_bad_payload(checkpoint, tmp_path):
    prog, payload, _ = checkpoint
    bad = tmp_path / "bad.bin"
    bad.write_bytes(_corrupt(payload.read_bytes(), "corrupted_middle_byte"))
    _assert_rejected(run([console_script(), "resume", bad], tmp_path))


def _length_fields(data: bytes) -> dict:
    """Offsets of the payload's length fields (see pyteleport/_payload.py)."""
    from pyteleport._payload.container import HEADER

    from pyteleport._payload.signing import ID_SIZE, MAC_BLAKE2B

    # the header, the version string, the key id of a signed payload
    at = HEADER.size + data[HEADER.size - 1] + (ID_SIZE if data[HEADER.size - 2] == MAC_BLAKE2B else 0)
    context_len = int.from_bytes(data[at:at + 8], "little")
    state_at = at + 8 + context_len
    state_len = int.from_bytes(data[state_at:state_at + 8], "little")
    return {"context length": (at, 8), "state length": (state_at, 8),
            "buffer count": (state_at + 8 + state_len, 4)}


@pytest.mark.parametrize("field", ["context length", "state length", "buffer count"])
@pytest.mark.parametrize("byte", ["low", "high"])
def test_resume_rejects_a_corrupted_length(checkpoint, tmp_path, field, byte):
    """A flipped length is refused with one line before anything is
    allocated for it or unpickled (a length is only covered by the trailer's
    checksum, at the end of the file)."""
    prog, payload, _ = checkpoint
    data = bytearray(payload.read_bytes())
    at, size = _length_fields(bytes(data))[field]
    data[at + (size - 1 if byte == "high" else 0)] ^= 0xFF
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(data))
    proc = run_python(["-m", "pyteleport", "resume", bad], tmp_path)
    _assert_rejected(proc, extra="payload")


@pytest.mark.parametrize("field", ["context length", "state length"])
def test_a_corrupted_length_in_a_stream_is_refused(checkpoint, field):
    """Over a pipe the reader cannot know how much is coming: an impossible
    length is refused as a PayloadError, never a MemoryError."""
    import threading

    from pyteleport._payload.container import PayloadError, read

    prog, payload, _ = checkpoint
    data = bytearray(payload.read_bytes())
    at, size = _length_fields(bytes(data))[field]
    data[at + size - 1] ^= 0xFF
    r, w = os.pipe()

    def feed():
        with open(w, "wb") as f:
            try:
                f.write(bytes(data))
            except BrokenPipeError:
                pass

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        with open(r, "rb") as stream, pytest.raises(PayloadError, match="corrupted payload"):
            read(stream)
    finally:
        writer.join()


SYNC_PROGRAM = """\
import os, sys
import pyteleport

arg = sys.argv[2]
sync = {"default": None, "True": True, "False": False}.get(arg, arg)
try:
    if pyteleport.checkpoint(sys.argv[1], sync=sync):
        print("RESUMED", arg, flush=True)
        sys.exit(0)
except pyteleport.TeleportError as e:
    print("REFUSED", e, flush=True)
print("CARRIES ON", os.path.exists(sys.argv[1]), flush=True)
"""


@pytest.mark.parametrize("sync, env", [("True", "0"), ("False", "1"), ("default", "0"), ("default", "no")])
def test_checkpoint_sync_option(tmp_path, sync, env):
    """sync= (else PYTELEPORT_SYNC) chooses whether the file is forced to disk;
    either way the checkpoint resumes."""
    prog = write_program(tmp_path, SYNC_PROGRAM)
    payload = tmp_path / "state.bin"
    written = run_python([prog, payload, sync], tmp_path, env_extra={"PYTELEPORT_SYNC": env})
    assert written.stdout == "CARRIES ON True\n", describe(written)
    resumed = run_python(["-m", "pyteleport", "resume", payload], tmp_path)
    assert resumed.stdout == f"RESUMED {sync}\n", describe(resumed)


@pytest.mark.parametrize("sync, env, name", [("maybe", "1", "sync"), ("default", "sometimes", "PYTELEPORT_SYNC")])
def test_checkpoint_refuses_a_bad_sync_value(tmp_path, sync, env, name):
    prog = write_program(tmp_path, SYNC_PROGRAM)
    payload = tmp_path / "state.bin"
    proc = run_python([prog, payload, sync], tmp_path, env_extra={"PYTELEPORT_SYNC": env})
    bad = sync if name == "sync" else env
    assert proc.stdout == (f"REFUSED pyteleport.checkpoint: {name} must be true or false (1/0), "
                           f"not {bad!r}\nCARRIES ON False\n"), describe(proc)
