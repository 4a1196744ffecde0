"""What the ``bash`` and ``ssh`` backends share: a shell command line whose
stdin and stdout carry the whole move.

The source starts the command (``ssh host ...``, ``bash -lc ...``) with a
shell script that runs the user's ``setup`` and then a Python with the boot
program of ``boot.py`` on its command line.  Then, over the command's stdin
and stdout:

1. source -> target: the *manifest*: the program's own files, to compare;
2. target -> source: the *hello* line (after a refusal, a status line instead);
3. source -> target: the *bundle* of files to ship, then the payload, its
   context adapted to the target (``retarget.py``);
4. target -> source: the status line, once the program is rebuilt;
5. afterwards (``forward.py``): the source's stdin and signals as frames to
   the target's relay, the program's output back; the relay's *exit* line
   gives the exit code.

Any failure up to step 4 raises :class:`~pyteleport.TeleportError` in the
source, with the target's own reason, and the program goes on there.  So
does silence: each step must make progress within ``handoff_timeout``; then
the command is killed (its whole process group when it is a local shell),
and the script's *watchdog* kills what the shell started there (``setup``)
if Python has not started in that time (see :meth:`StreamBackend.script`).
"""
from __future__ import annotations

import base64
import logging
import os
import pickle
import shlex
import signal
import subprocess
import sys
import time
import zlib
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Union

from ..._payload import checksum as _checksum
from ..._errors import TeleportError
from .. import Backend, Target, handoff_timeout_option
from . import boot as _boot

if TYPE_CHECKING:
    from . import ship as _ship
    from .channel import Channel

log = logging.getLogger("pyteleport")

_BOOT_CACHE: Dict[str, str] = {}
def _boot_source() -> str:
    """The boot program, compressed for the command line."""
    if "b64" not in _BOOT_CACHE:
        with open(_boot.__file__.replace(".pyc", ".py"), "rb") as f:
            source = f.read()
        _BOOT_CACHE["b64"] = base64.b64encode(zlib.compress(source, 9)).decode("ascii")
    return _BOOT_CACHE["b64"]


def _stub() -> str:
    """The ``python -c`` program: refuses another Python version in a syntax
    any Python understands, then runs the boot program."""
    major, minor = sys.version_info[:2]
    return (
        "import sys\n"
        f"if sys.version_info[:2] != ({major}, {minor}):\n"
        "    sys.stdout.write('" + _boot.STATUS.replace("\x1b", "\\x1b") + "ERR this is Python %d.%d (%s), "
        f"the program runs on Python {major}.{minor}: start a Python {major}.{minor} on the target "
        "(the backend\\'s python= or setup= options)\\n' % (sys.version_info[0], sys.version_info[1], "
        "sys.executable))\n"
        "    sys.exit(2)\n"
        "import binascii, zlib\n"
        f"exec(compile(zlib.decompress(binascii.a2b_base64('{_boot_source()}')), '<pyteleport boot>', 'exec'))\n"
    )


def shell_word(word: str) -> str:
    """Quote ``word`` for a POSIX shell, keeping a leading ``~/`` expandable."""
    if word.startswith("~/"):
        return "~/" + shlex.quote(word[2:])
    return shlex.quote(word)


def _cd_operand(path: str) -> str:
    """``path`` as cd takes it literally: a relative one starts with ``./``,
    so that ``-`` or ``-P`` is a folder, not an option (nor $OLDPWD)."""
    if path.startswith(("/", "~/")) or path == "~":
        return path
    return "./" + path


def _shield_signals() -> None:  # pragma: no cover - runs in the child
    # Ctrl-C and hang-ups at the terminal reach the source, which forwards
    # them: the command in between (ssh) must not die of them
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def _shield_in_own_group() -> None:  # pragma: no cover - runs in the child
    _shield_signals()
    os.setpgid(0, 0)


def _kill(proc: subprocess.Popen) -> None:
    """Kill the command (with its process group if it leads one) and reap it."""
    if proc.poll() is None:
        try:
            if getattr(proc, "own_group", False):
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except OSError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        try:
            stream.close()
        except (OSError, AttributeError):
            pass


class StreamBackend(Backend):
    """Base of the backends that start a shell command line (``bash``, ``ssh``).

    :param python: interpreter on the target (default: the same path as here
        if it exists there, else ``python3``); it must be the same Python
        minor version.  A leading ``~/`` is expanded there.
    :param setup: shell lines run before Python, in the target's shell
        (``module load python/3.11``, ``conda activate env``, ``cd dir``); a
        string or a list of lines.  They read no stdin.
    :param cwd: working directory of the program there (default: the one
        ``setup`` leaves, which starts as this program's if it exists there).
    :param env: environment variables to set there (also for the interpreter
        itself: exported before it starts).
    :param ship: ``True`` (default): the program's own modules that the
        target lacks are sent along; ``False``: none; a list of files and
        folders: those always, and the automatic ones.
    :param detach: ``False`` (default): this process forwards the standard
        streams and signals until the program ends there.  ``True``: the
        program runs on by itself with its output in ``pyteleport-PID.out``
        and ``.err`` in its working directory there; a string: the path
        prefix of these two files (``os.devnull``: discard).  This process
        then exits 0 right after the handoff.
    :param handoff_timeout: seconds each step of the handoff may take: the
        target's start (connection, ``setup``, Python), taking the payload,
        confirming the rebuild (default 600; ``PYTELEPORT_HANDOFF_TIMEOUT``).
        Past it the target is killed and the program goes on here.
    :param ship_cache: ``True`` (default; ``PYTELEPORT_SHIP_CACHE=0``
        disables it): the target keeps the shipped files in
        ``~/.cache/pyteleport/ship`` (``$XDG_CACHE_HOME``), by content hash,
        and later moves send only what it does not hold.
    """

    name = "?"

    def __init__(self, *, python: Optional[str] = None, setup: Union[str, Sequence[str], None] = None,
                 cwd: Optional[str] = None, env: Optional[Mapping[str, str]] = None,
                 ship: Union[bool, Sequence[Union[str, os.PathLike]]] = True,
                 detach: Union[bool, str] = False, handoff_timeout: Optional[float] = None,
                 ship_cache: Optional[bool] = None):
        if python is not None and (not isinstance(python, str) or not python):
            raise TeleportError(f"{self.name} backend: python must be a command name or a path, not {python!r}")
        if setup is None:
            setup = ""
        elif not isinstance(setup, str):
            setup = "\n".join(str(line) for line in setup)
        env = dict(env or {})
        for key, value in env.items():
            # a shell variable name: ASCII letters, digits and _ ("é" is a
            # Python identifier, which the shell would drop with a complaint)
            if not (isinstance(key, str) and key.isascii() and key.isidentifier() and isinstance(value, str)):
                raise TeleportError(f"{self.name} backend: env must map variable names to strings "
                                    f"(names of ASCII letters, digits and _; got {key!r}: {value!r})")
            if "\0" in value:
                raise TeleportError(f"{self.name} backend: env[{key!r}] holds a NUL character, which no "
                                    "environment variable can")
        if cwd is not None:
            if not isinstance(cwd, (str, os.PathLike)) or not str(cwd) or "\0" in str(cwd):
                raise TeleportError(f"{self.name} backend: cwd must be a non-empty path, not {cwd!r}")
        if "\0" in setup:
            raise TeleportError(f"{self.name} backend: setup holds a NUL character")
        if not (isinstance(ship, bool) or (isinstance(ship, (list, tuple)) and all(
                isinstance(p, (str, os.PathLike)) for p in ship))):
            raise TeleportError(f"{self.name} backend: ship must be True, False or a list of paths, not {ship!r}")
        if not isinstance(detach, (bool, str)):
            raise TeleportError(f"{self.name} backend: detach must be True, False or an output path prefix")
        self.python = python
        self.setup = setup
        self.cwd = cwd
        self.env = env
        self.ship = ship
        self.detach = detach
        self.handoff_timeout = handoff_timeout_option(handoff_timeout, f"{self.name} backend")
        if ship_cache is None:
            ship_cache = os.environ.get("PYTELEPORT_SHIP_CACHE", "1").strip().lower()
            ship_cache = ship_cache not in ("0", "false", "no", "off")
        self.ship_cache = bool(ship_cache)
        self._started = None   # (proc, channel, plan, token, start time) between prepare() and spawn()
        self._phase = ""       # the step of the handoff under way, for a timeout's message

    # -- what subclasses provide --------------------------------------------

    def argv(self, script: str) -> List[str]:
        """The argv that runs the POSIX shell ``script`` on the target."""
        raise NotImplementedError

    def describe(self) -> str:
        """How error messages name this target (``ssh backend (node042)``)."""
        return f"{self.name} backend"

    def own_group(self) -> bool:
        """Whether the command runs in a process group of its own here (so
        that a timeout kills what it started); not for commands that may
        prompt on the terminal (``ssh``)."""
        return False

    # -- the script ---------------------------------------------------------

    def script(self, offer: str) -> str:
        """The shell script: setup, then Python with the boot program.

        A *watchdog* started first kills the shell's process group (``setup``
        and what it started) if Python has not started within
        ``handoff_timeout``; the boot program stops it (``_boot.WATCHDOG``).
        It runs only where the shell leads its process group (an ``ssh``
        login does): elsewhere the group is not the target's alone."""
        lines = [f"cd {shlex.quote(os.getcwd())} 2>/dev/null", _watchdog(self.handoff_timeout)]
        if self.setup.strip():
            lines.append("{\n" + self.setup + "\n} </dev/null")
        if self.cwd:
            lines.append(f"cd {shell_word(_cd_operand(str(self.cwd)))} || exit 2")
        for key, value in self.env.items():
            lines.append(f"export {key}={shlex.quote(value)}")
        flags = subprocess._args_from_interpreter_flags()
        tail = " ".join(shlex.quote(a) for a in [*flags, "-c", _stub(), offer])
        if self.python:
            lines.append(f"exec {shell_word(self.python)} {tail}")
        else:
            lines.append(f"__pyteleport_python={shlex.quote(sys.executable)}")
            lines.append('[ -x "$__pyteleport_python" ] || __pyteleport_python=python3')
            lines.append(f'exec "$__pyteleport_python" {tail}')
        return "\n".join(lines) + "\n"

    # -- the handoff ----------------------------------------------------------

    def prepare(self) -> None:
        """Start the command line and send the manifest, before the program
        is packed: the connection and the target's start-up overlap with the
        packing (``pyteleport.api`` calls this when a backend has it).
        :meth:`cancel` stops it if the packing fails."""
        if self._started is not None:
            return
        what = self.describe()
        token = os.urandom(8).hex()
        offer = {
            "v": 1,
            "token": token,
            "python": list(sys.version_info[:2]),
            "magic": _magic(),
            "detach": self.detach,
        }
        offer_text = _boot.encode(offer)
        argv = self.argv(self.script(offer_text))
        log.debug("%s: starting %s", what, " ".join(shlex.quote(a) for a in argv[:-1]) + " SCRIPT")
        group = self.own_group()
        started_at = time.monotonic()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    bufsize=0, preexec_fn=_shield_in_own_group if group else _shield_signals)
        except OSError as e:
            raise TeleportError(f"{what}: cannot start {argv[0]!r}: {e.strerror or e}") from None
        proc.own_group = group
        # what the target needs to know comes while it starts up
        try:
            from . import ship as _ship
            from .channel import Channel, ChannelTimeout
            ch = Channel(proc, stall_timeout=self.handoff_timeout)
            self._started = (proc, ch, None, token, started_at)
            plan = _ship.make_plan(self.ship)
            self._started = (proc, ch, plan, token, started_at)
            manifest = {"pyteleport": _ship.pyteleport_digest(), "files": plan.offer_files(),
                        "cache": self.ship_cache}
            if self.ship_cache:
                # what may travel, for the target to look up in its cache
                manifest["packages"] = {name: [f.sha for f in _ship.package_files(name)]
                                        for name in _boot.PACKAGES}
                manifest["explicit"] = [f.sha for f in plan.explicit]
            data = _boot.encode(manifest).encode("ascii")
            try:
                ch.write(len(data).to_bytes(4, "big") + data)
            except BrokenPipeError:
                pass   # the target is gone already: its output says why
            except ChannelTimeout:
                pass   # it does not read: the wait for its hello tells
        except BaseException:
            _kill(proc)
            self._started = None
            raise

    def cancel(self) -> None:
        """Stop what :meth:`prepare` started (the program stays here)."""
        started, self._started = self._started, None
        if started is not None:
            _kill(started[0])

    def spawn(self, payload) -> Target:
        from .channel import ChannelTimeout
        self.prepare()
        proc, ch, plan, token, started_at = self._started
        self._started = None
        what = self.describe()
        self._phase = "start (connection, setup, Python)"
        try:
            return self._handoff(proc, ch, payload, plan, token, what, started_at)
        except ChannelTimeout:
            _kill(proc)
            last = ch.stderr_tail()
            raise TeleportError(
                f"{what}: the target did not {self._phase} within {self.handoff_timeout:g} s "
                f"(handoff_timeout); it is stopped{f' (its stderr: {last})' if last else ''} and the "
                f"program goes on here: raise handoff_timeout or PYTELEPORT_HANDOFF_TIMEOUT if "
                f"that takes longer") from None
        except BaseException:
            _kill(proc)
            raise

    def _handoff(self, proc, ch: Channel, payload, plan: _ship.Plan, token: str, what: str,
                 started_at: float) -> Target:
        from ..._progress import Progress
        from ..._core.restore import parse_status
        from . import ship as _ship
        from .forward import DetachedTarget, StreamTarget, _write_all
        from .retarget import retarget
        prelude = bytearray()
        hello_marker = _boot.HELLO.format(token)
        hello = None
        deadline = started_at + self.handoff_timeout
        while hello is None:
            line = ch.readline(deadline)
            if line is None:
                raise self._died(proc, ch, what, "the target did not start")
            text = line.decode("utf-8", "surrogateescape")
            if text.startswith(hello_marker):
                hello = _boot.decode(text[len(hello_marker):].strip())
                break
            verdict = parse_status(text)
            if verdict is not None:
                self._finish(proc, ch)
                raise TeleportError(f"{what}: the target could not resume the program: {verdict[1]}")
            prelude += line
        log.debug("%s: target pid %s on %s, Python %s (%s), cwd %s", what, hello["pid"], hello["host"],
                  hello["version"], hello["executable"], hello["cwd"])

        files, front, roots = self._select(plan, hello, what)
        ctx = pickle.loads(payload.context)
        ctx = retarget(ctx, hello, front=front, shipped_roots=roots, env=self.env)
        moved = type(payload)(pickle.dumps(ctx, protocol=4), payload.state, payload.buffers)
        progress = Progress(moved.size, "teleport")
        self._phase = "take the payload"
        try:
            sent, sent_bytes = _ship.write_bundle(ch, files, hello["cached"])
            if files:
                log.debug("%s: shipped files: %d sent (%d bytes), %d from the target's cache (%d bytes)",
                          what, sent, sent_bytes, len(files) - sent,
                          sum(f.size for f in files) - sent_bytes)
            # CRC-32: the target may have pyteleport as shipped source,
            # without the compiled xxhash
            moved.write_to(ch, progress, checksum=_checksum.Crc32)
        except BrokenPipeError:
            pass   # the target stopped reading: its status says why
        finally:
            progress.close()
        del moved, payload

        self._phase = "confirm that it rebuilt the program"
        deadline = time.monotonic() + self.handoff_timeout
        while True:
            line = ch.readline(deadline)
            if line is None:
                raise self._died(proc, ch, what, "the target ended before confirming the move")
            verdict = parse_status(line.decode("utf-8", "surrogateescape"))
            if verdict is None:
                prelude += line   # printed while the program was rebuilt
                continue
            if verdict[0]:
                break
            self._finish(proc, ch)
            raise TeleportError(f"{what}: the target could not resume the program: {verdict[1]}")

        log.debug("%s: the program is rebuilt on %s (pid %s); handing over", what, hello["host"], hello["pid"])
        if self.detach:
            outputs = hello.get("outputs") or ["?", "?"]
            ch.close_input()
            self._finish(proc, ch)
            _write_all(1, bytes(prelude))
            _write_all(2, bytes(ch.err_buf))
            log.info("%s: the program runs on by itself on %s; its output goes to %s and %s",
                     what, hello["host"], outputs[0], outputs[1])
            return DetachedTarget()
        return StreamTarget(ch, bytes(prelude), token, what)

    def _select(self, plan: _ship.Plan, hello: dict, what: str):
        """Files to send, sys.path entries to put first, shipped roots -> their folder."""
        from . import ship as _ship
        ship_dir = hello["ship_dir"]
        files: List[_ship.ShipFile] = []
        front: List[str] = []
        have = hello["have"]
        missing = [name for name in _boot.PACKAGES if not have.get(name)]
        for name in missing:
            files += _ship.package_files(name)
        if missing:
            front.append(ship_dir + "/lib")
            log.debug("%s: shipping %s (the target cannot import %s)", what, ", ".join(missing),
                      "them" if len(missing) > 1 else "it")
        if plan.explicit:
            files += plan.explicit
            front.append(ship_dir + "/explicit")
            log.debug("%s: shipping as asked: %s", what, ", ".join(f.src for f in plan.explicit))
        need = set(hello["need"])
        roots: Dict[str, str] = {}
        index = 0
        for unit in plan.units:
            unit_indices = range(index, index + len(unit.files))
            index += len(unit.files)
            if not any(i in need for i in unit_indices):
                continue
            if unit.root not in roots:
                roots[unit.root] = f"{ship_dir}/r{len(roots)}"
            prefix = roots[unit.root][len(ship_dir) + 1:]
            for path, size, mode in unit.files:
                rel = os.path.relpath(path, unit.root_abs).replace(os.sep, "/")
                files.append(_ship.ShipFile(path, f"{prefix}/{rel}", size, mode, _ship.file_sha(path)))
            log.debug("%s: shipping %s (%d files from %s): the target lacks it", what, unit.name,
                      len(unit.files), unit.root_abs)
        return files, front, roots

    @staticmethod
    def _finish(proc, ch: Channel) -> None:
        """Let a refusing target end (it does right after its status line)."""
        ch.close_input()
        ch.drain(timeout=10)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _kill(proc)

    def _died(self, proc, ch: Channel, what: str, summary: str) -> TeleportError:
        self._finish(proc, ch)
        code = proc.returncode
        reason = ch.stderr_tail()
        if log.isEnabledFor(logging.DEBUG) and ch.err_buf:
            log.debug("%s: the target's stderr:\n%s", what, bytes(ch.err_buf).decode("utf-8", "replace"))
        detail = reason or (f"exit code {code}" if code is not None else "no reason given")
        if code in (126, 127) and self.python:
            detail += f" (python={self.python!r}: name an interpreter that exists there)"
        elif code in (126, 127):
            detail += " (name an interpreter that exists there with python=, or set PATH in setup=)"
        return TeleportError(f"{what}: {summary}: {detail}")


def _watchdog(timeout: float) -> str:
    """Shell lines that start the watchdog of :meth:`StreamBackend.script`.

    In the background, with the standard streams closed (the connection ends
    with the target), a subshell sleeps ``timeout`` in steps of a second
    then kills the process group, unless the boot program, told its pid in
    ``_boot.WATCHDOG``, has killed it and its sleep before.  It ends by
    itself within a second of the shell (or the Python it became) ending
    first: a refusal, a failed ``setup`` or ``exec``."""
    seconds = max(1, int(-(-timeout // 1)))
    return (
        "__pyteleport_wd=\n"
        "read -r _ _ _ _ __pyteleport_pg _ 2>/dev/null </proc/$$/stat\n"
        'if [ "$__pyteleport_pg" = "$$" ]; then\n'
        f"  (n=0; while [ $n -lt {seconds} ]; do sleep 1; kill -0 $$ 2>/dev/null || exit 0; n=$((n + 1)); done; "
        "kill -KILL 0) </dev/null >/dev/null 2>&1 &\n"
        "  __pyteleport_wd=$!\n"
        "fi\n"
        f"export {_boot.WATCHDOG}=$__pyteleport_wd"
    )


def _magic() -> str:
    from importlib.util import MAGIC_NUMBER
    return MAGIC_NUMBER.hex()
