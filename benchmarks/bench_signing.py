"""Cost of signing: write and read+verify a trivial and a 256 MiB payload, signed (keyed
BLAKE2b) and checksummed (xxh3-64), on tmpfs.  Run: python benchmarks/bench_signing.py"""
import os, time, pickle
from pyteleport._payload.container import Payload, read
def bench(n_mib, sign, reps=3):
    buf = bytearray(os.urandom(1 << 20)) * n_mib
    p = Payload(pickle.dumps({"a": 1}), pickle.dumps([1], protocol=5), [buf] if n_mib else [])
    path = f"/dev/shm/12trust-measure-{sign}.bin"
    w = r = 1e9
    for _ in range(reps):
        t = time.perf_counter()
        with open(path, "wb") as f:
            p.write_to(f, sign=sign)
        w = min(w, time.perf_counter() - t)
        t = time.perf_counter()
        with open(path, "rb") as f:
            read(f, signed=sign)
        r = min(r, time.perf_counter() - t)
    os.unlink(path)
    return w * 1e3, r * 1e3
for n in (0, 256):
    for sign in (False, True):
        w, r = bench(n, sign)
        print(f"{n:4d} MiB {'blake2b-mac' if sign else 'xxh3':12s} write {w:8.1f} ms  read+verify {r:8.1f} ms")
