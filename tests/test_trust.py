"""Trust: only this user's own, signed payloads run; inspect runs nothing.

Files "of another user" are really another uid's (see otheruser.py); a
forged payload is a real checkpoint written with another key.
"""

import os
import stat

import pytest

from otheruser import other_user, plant, remove, shared_dir
from progs import describe, run_python, write_program

PWNED = """\
import sys
import pyteleport

if pyteleport.checkpoint(sys.argv[1]):
    print("PWNED", flush=True)
    sys.exit(0)
print("WRITTEN", flush=True)
"""


@pytest.fixture(scope="module")
def attacker(tmp_path_factory):
    """(attacker's key file, payload signed with it, payload signed with
    this user's key): the same program, which prints PWNED when it runs."""
    base = tmp_path_factory.mktemp("attacker")
    prog = write_program(base, PWNED)
    key = base / "attacker.key"
    forged = base / "forged.bin"
    proc = run_python([prog, forged], base, env_extra={"PYTELEPORT_KEY_FILE": str(key)})
    assert proc.returncode == 0 and "WRITTEN" in proc.stdout, describe(proc)
    mine = base / "mine.bin"
    proc = run_python([prog, mine], base)
    assert proc.returncode == 0, describe(proc)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    return key, forged, mine


def _refused(proc, extra: str = ""):
    info = describe(proc)
    assert proc.returncode == 2, info
    assert "PWNED" not in proc.stdout, "the planted program ran" + info
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, info
    if extra:
        assert extra in err, info
    return err


def _resume(path, cwd, *options, env=None):
    return run_python(["-m", "pyteleport", "resume", *options, path], cwd, env_extra=env)


def test_a_payload_planted_by_another_user_is_refused(attacker, tmp_path):
    """Finding 1: a 0666 file of another uid in a shared folder."""
    _, forged, _ = attacker
    uid, _ = other_user()
    shared = shared_dir()
    try:
        planted = shared / "ckpt.bin"
        plant(forged.read_bytes(), planted)
        assert planted.stat().st_uid == uid
        err = _refused(_resume(planted, tmp_path), extra=f"uid {uid}")
        assert f"chown {os.geteuid()}" in err
    finally:
        remove(shared)


def test_a_payload_signed_with_another_key_is_refused(attacker, tmp_path):
    """Finding 1: the checksum is recomputable; a signature is not, without the key."""
    key, forged, _ = attacker
    own = tmp_path / "copy.bin"
    own.write_bytes(forged.read_bytes())
    os.chmod(own, 0o600)
    _refused(_resume(own, tmp_path), extra="signed with another key")


def test_a_payload_from_elsewhere_runs_once_its_key_is_named(attacker, tmp_path):
    key, forged, _ = attacker
    own = tmp_path / "trusted.bin"
    own.write_bytes(forged.read_bytes())
    os.chmod(own, 0o600)
    proc = _resume(own, tmp_path, "--key", key)
    assert proc.returncode == 0 and proc.stdout.splitlines() == ["PWNED"], describe(proc)
    proc = _resume(own, tmp_path, env={"PYTELEPORT_KEY_FILE": str(key)})
    assert proc.returncode == 0 and proc.stdout.splitlines() == ["PWNED"], describe(proc)


def test_an_unsigned_payload_with_a_valid_checksum_is_refused(attacker, tmp_path):
    """What an attacker can make without the key: a well-formed payload whose
    checksum is right.  resume refuses it; inspect shows it, marked."""
    from pyteleport._payload.container import read
    _, _, mine = attacker
    with open(mine, "rb") as f:
        _, payload = read(f)
    unsigned = tmp_path / "unsigned.bin"
    with open(unsigned, "wb") as out:
        payload.write_to(out)
    _refused(_resume(unsigned, tmp_path), extra="not signed")
    proc = run_python(["-m", "pyteleport", "inspect", unsigned], tmp_path)
    assert proc.returncode == 0 and "NOT signed" in proc.stdout, describe(proc)


def test_own_signed_payload_resumes(attacker, tmp_path):
    _, _, mine = attacker
    proc = _resume(mine, tmp_path)
    assert proc.returncode == 0 and proc.stdout.splitlines() == ["PWNED"], describe(proc)


def test_the_key_is_made_private_and_loose_keys_are_refused(attacker, tmp_path):
    _, _, mine = attacker
    config = tmp_path / "config"
    prog = write_program(tmp_path, PWNED)
    env = {"XDG_CONFIG_HOME": str(config)}
    env.pop("PYTELEPORT_KEY_FILE", None)
    proc = run_python([prog, tmp_path / "p.bin"], tmp_path, env_extra=env)
    assert proc.returncode == 0, describe(proc)
    key = config / "pyteleport" / "secret"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert len(bytes.fromhex(key.read_text().strip())) == 32
    proc = _resume(tmp_path / "p.bin", tmp_path, env=env)
    assert proc.returncode == 0 and proc.stdout.splitlines() == ["PWNED"], describe(proc)
    os.chmod(key, 0o644)
    _refused(_resume(tmp_path / "p.bin", tmp_path, env=env), extra=f"chmod 600 {key}")
    os.chmod(key, 0o600)
    uid, gid = other_user()
    os.chown(key, uid, gid)
    _refused(_resume(tmp_path / "p.bin", tmp_path, env=env), extra="belongs to uid")


def test_checkpoint_refuses_a_loose_key(tmp_path):
    """The source side: a key others can read is not used to sign (the
    program carries on with a TeleportError)."""
    key = tmp_path / "key"
    key.write_text(os.urandom(32).hex() + "\n")
    os.chmod(key, 0o644)
    prog = write_program(tmp_path, """\
        import sys, pyteleport
        try:
            pyteleport.checkpoint(sys.argv[1])
        except pyteleport.TeleportError as e:
            print("REFUSED", e, flush=True)
        print("CARRIES ON", flush=True)
    """)
    proc = run_python([prog, tmp_path / "p.bin"], tmp_path, env_extra={"PYTELEPORT_KEY_FILE": str(key)})
    assert proc.returncode == 0, describe(proc)
    assert "REFUSED" in proc.stdout and "chmod 600" in proc.stdout and "CARRIES ON" in proc.stdout, describe(proc)
    assert not (tmp_path / "p.bin").exists()


def test_resume_refuses_a_symlink_a_fifo_and_a_loose_file(attacker, tmp_path):
    """Finding 8 (FIFO: it blocked resume forever) and StrictModes."""
    _, _, mine = attacker
    link = tmp_path / "link.bin"
    link.symlink_to(mine)
    _refused(_resume(link, tmp_path), extra="symbolic link")
    fifo = tmp_path / "fifo.bin"
    os.mkfifo(fifo)
    _refused(_resume(fifo, tmp_path), extra="not a regular file")
    proc = run_python(["-m", "pyteleport", "inspect", fifo], tmp_path)
    _refused(proc, extra="not a regular file")
    loose = tmp_path / "loose.bin"
    loose.write_bytes(mine.read_bytes())
    os.chmod(loose, 0o620)
    _refused(_resume(loose, tmp_path), extra="chmod go-w")


def test_bytes_after_the_trailer_are_refused(attacker, tmp_path):
    """Finding 8: the payload ran with whatever followed it."""
    _, _, mine = attacker
    longer = tmp_path / "longer.bin"
    longer.write_bytes(mine.read_bytes() + b"print('more')\n")
    os.chmod(longer, 0o600)
    _refused(_resume(longer, tmp_path), extra="follow its end")
    _refused(run_python(["-m", "pyteleport", "inspect", longer], tmp_path), extra="follow its end")


def _with_context(path, context: bytes, out):
    """``path``'s payload with another context pickle, signed with this user's key."""
    from pyteleport._payload.container import Payload, read
    with open(path, "rb") as f:
        _, payload = read(f)
    with open(out, "wb") as f:
        Payload(context, payload.state, payload.buffers).write_to(f, sign=True)


def test_inspect_never_executes_the_context(attacker, tmp_path):
    """Finding 2: inspect unpickled the context (before any check).  Even a
    context signed with this user's own key is read as plain data only."""
    _, _, mine = attacker
    marker = tmp_path / "EXECUTED"
    evil = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    bad = tmp_path / "evil.bin"
    _with_context(mine, evil, bad)
    proc = run_python(["-m", "pyteleport", "inspect", bad], tmp_path)
    _refused(proc, extra="os.system")
    assert not marker.exists(), "inspect executed the payload's context"


def test_inspect_shows_a_valid_payload_and_its_signature(attacker, tmp_path):
    _, _, mine = attacker
    proc = run_python(["-m", "pyteleport", "inspect", mine], tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert "signed, key id" in proc.stdout and "PWNED" not in proc.stdout, describe(proc)


MPI_PROGRAM = """\
import os, sys
from mpi4py import MPI
import pyteleport, pyteleport.mpi
try:
    if pyteleport.mpi.checkpoint(sys.argv[1]):
        print("RESUMED", flush=True)
        sys.exit(0)
    print("SAVED", flush=True)
except pyteleport.TeleportError as e:
    print("REFUSED", e, flush=True)
print("CARRIES ON", flush=True)
"""


@pytest.mark.parametrize("planted", ["rank-0.a.pyteleport", "MANIFEST.tmp"])
def test_mpi_checkpoint_never_writes_through_a_planted_link(tmp_path, planted):
    """Finding 4: the checkpoint overwrote (and chmod 0600) the link's target."""
    prog = write_program(tmp_path, MPI_PROGRAM)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.chmod(victim, 0o644)
    ckpt = tmp_path / "ck"
    ckpt.mkdir(mode=0o700)
    (ckpt / planted).symlink_to(victim)
    proc = run_python([prog, ckpt], tmp_path)
    assert proc.returncode == 0 and proc.stdout.splitlines() == ["SAVED", "CARRIES ON"], describe(proc)
    assert victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert not (ckpt / planted).is_symlink()
    proc = run_python(["-m", "pyteleport", "resume", ckpt], tmp_path)
    assert proc.returncode == 0 and proc.stdout.splitlines() == ["RESUMED"], describe(proc)


def test_mpi_checkpoint_refuses_a_loose_directory(tmp_path):
    """Finding 4: a pre-existing 0777 directory stayed 0777 (README: 0700)."""
    prog = write_program(tmp_path, MPI_PROGRAM)
    ckpt = tmp_path / "ck"
    ckpt.mkdir()
    os.chmod(ckpt, 0o777)
    proc = run_python([prog, ckpt], tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.splitlines()[-1] == "CARRIES ON", describe(proc)
    assert "REFUSED" in proc.stdout and f"chmod go-rwx {ckpt}" in proc.stdout, describe(proc)
    assert sorted(p.name for p in ckpt.iterdir()) == []


def test_mpi_resume_refuses_planted_and_damaged_files(tmp_path):
    """Finding 8 (a non-UTF-8 MANIFEST gave a traceback) and another user's rank file."""
    prog = write_program(tmp_path, MPI_PROGRAM)
    ckpt = tmp_path / "ck"
    proc = run_python([prog, ckpt], tmp_path)
    assert proc.returncode == 0 and proc.stdout.splitlines() == ["SAVED", "CARRIES ON"], describe(proc)
    manifest = (ckpt / "MANIFEST").read_bytes()
    (ckpt / "MANIFEST").write_bytes(b"\xff\xfe" + manifest)
    for command in ("resume", "inspect"):
        _refused(run_python(["-m", "pyteleport", command, ckpt], tmp_path), extra="not text")
    (ckpt / "MANIFEST").write_bytes(manifest)
    os.chown(ckpt / "rank-0.a.pyteleport", *other_user())
    _refused(run_python(["-m", "pyteleport", "resume", ckpt], tmp_path), extra="belongs to uid")
