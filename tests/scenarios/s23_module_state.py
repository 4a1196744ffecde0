"""Module state moves with the program: every case sets some state that
lives in a module (standard library, NumPy, an installed library, the
interpreter), moves, and prints what depends on it.  Usage:
s23_module_state.py CASE [TMPDIR]."""
import sys

from _scenario import log, move, run_case


def _keep_public(record):
    return "secret" not in record.getMessage()


def case_logging():
    import logging
    import os
    path = os.path.join(sys.argv[2], "app.log")
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="[%(process)d] %(levelname)s %(name)s: %(message)s")
    logger = logging.getLogger("app.sub")
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(levelname)s|%(name)s|%(message)s"))
    handler.addFilter(_keep_public)
    logging.getLogger("app").addHandler(handler)
    logging.getLogger("noisy").setLevel(logging.ERROR)
    logging.addLevelName(25, "NOTICE")
    logger.info("before")
    move()
    logger.info("after")
    logger.debug("below the level: hidden")
    logger.log(25, "a custom level")
    logging.getLogger("noisy").warning("hidden too")
    logger.info("a secret line, kept out of the file")
    handler.flush()
    with open(path) as f:
        for line in f:
            log("file:", line.rstrip())


def case_random():
    import random
    random.seed(7)
    draw = random.random    # bound to the module's global generator
    log("before", random.random(), random.randint(1, 100), random.gauss(0, 1))
    move()
    log("after", random.random(), draw(), random.gauss(0, 1), random.choice("abcdef"))
    random.seed(7)
    log("seeded again", draw())


def case_numpy_random():
    import numpy as np
    np.random.seed(3)
    log("before", np.random.rand(), np.random.standard_normal())
    move()
    log("after", np.random.rand(), np.random.standard_normal(), np.random.randint(0, 1000, 3))


def case_numpy_options():
    import numpy as np
    np.set_printoptions(precision=3, suppress=True)
    np.seterr(divide="ignore", invalid="raise")
    log("before", np.array([1 / 3, 2e-9]))
    move()
    log("after", np.array([1 / 3, 2e-9]), np.array([1.0]) / 0, np.geterr()["divide"])
    try:
        np.array([0.0]) / 0
    except FloatingPointError as e:
        log("raised", e)


def case_warnings():
    import warnings
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.simplefilter("error", RuntimeWarning)
    move()
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn("quiet", UserWarning)
        warnings.warn("loud", FutureWarning)
    log("recorded", [str(w.message) for w in caught])
    try:
        warnings.warn("an error", RuntimeWarning)
    except RuntimeWarning as e:
        log("raised", e)


def case_decimal():
    import decimal
    context = decimal.getcontext()
    context.prec = 6
    context.rounding = decimal.ROUND_DOWN
    move()
    log("sqrt", decimal.Decimal(2).sqrt())
    context.prec = 3        # still the current context
    log("seventh", decimal.Decimal(1) / decimal.Decimal(7), decimal.getcontext() is context)


def case_interpreter():
    import gc
    import os
    sys.setrecursionlimit(4321)
    sys.setswitchinterval(0.02)
    gc.set_threshold(555, 7, 3)
    gc.disable()
    os.umask(0o027)
    move()
    mask = os.umask(0o022)
    log("limit", sys.getrecursionlimit(), "switch", sys.getswitchinterval(),
        "gc", gc.get_threshold(), gc.isenabled(), "umask", oct(mask))


def _hook(kind, error, tb):
    log("excepthook:", kind.__name__, error)


def case_excepthook():
    sys.excepthook = _hook
    move()
    raise ValueError("uncaught after the move")


def case_atexit():
    import atexit
    import pyteleport   # noqa: F401 (handlers registered after it are recorded)
    atexit.register(log, "exit handler", 42)
    move()
    log("the program ends")


def case_stdlib_attribute():
    import string
    string.note = "set at run time"
    string.counts = {"a": 1}
    move()
    log("note", string.note, string.counts)


def case_runtime_class():
    from fakelib import creator
    creator.make("Fitness", object, weights=(1.0, -1.0))
    creator.make("Individual", list, fitness=None)
    creator.make_plain("Plain", dict)
    individual = creator.Individual([1, 2, 3])
    plain = creator.Plain(a=1)
    move()
    log("individual", type(individual).__name__, individual, individual.tag,
        isinstance(individual, creator.Individual), creator.Individual([4]).tag)
    log("fitness", creator.Fitness.weights, creator.Fitness().tag)
    log("plain", type(plain) is creator.Plain, plain)


def case_extension():
    from fakelib import counter, registered
    counter.bump()
    counter.bump()
    registered.remember("a")
    move()
    log("counter", counter.bump(), "names", registered.remember("b"))


def case_unserialisable_library_state():
    import socket
    import string
    string.connection = socket.socket()     # a library module's, not the program's: stays behind
    log("before")
    move()
    log("moved")
    if hasattr(string, "connection"):
        string.connection.close()


def case_torch_random():
    import torch
    torch.manual_seed(11)
    log("before", torch.rand(2).tolist())
    move()
    log("after", torch.rand(3).tolist(), torch.randint(0, 1000, (2,)).tolist())


def case_rlock():
    import threading
    lock = threading.RLock()    # logging handlers hold one each
    with lock:
        log("held before")
    move()
    with lock:                  # would wait forever on a lock dill rebuilt
        log("held after", lock.acquire(blocking=False))
        lock.release()


def case_held_library_lock():
    # logging's module lock (an RLock) and a plain lock of a library module,
    # held across the move: a move at a signal inside logging lands there
    import logging
    import string
    logging._lock.acquire()
    logging._lock.acquire()
    string.held_lock = threading_lock = __import__("_thread").allocate_lock()
    threading_lock.acquire()
    free = logging.Handler().lock      # not held: stays free
    move()
    logging._lock.release()
    logging._lock.release()            # "cannot release un-acquired lock" if left behind
    log("module lock released twice; held by nobody now:", logging._lock.acquire(blocking=False))
    logging._lock.release()
    log("plain lock still held:", string.held_lock.locked())
    string.held_lock.release()
    log("handler lock free:", free.acquire(blocking=False))


if __name__ == "__main__":
    run_case(globals())
