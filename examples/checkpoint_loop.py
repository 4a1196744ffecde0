"""Checkpoint a long loop; resume it later with `pyteleport resume loop.ckpt`."""
import sys

import pyteleport

total = 0
for step in range(10):
    total += step
    if step == 4 and not pyteleport.checkpoint("loop.ckpt"):
        print("checkpoint written at step", step, "; resume with: pyteleport resume loop.ckpt")
        sys.exit(0)
    print("step", step, "total", total)
