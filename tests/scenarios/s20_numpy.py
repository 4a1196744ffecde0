"""NumPy arrays and a random generator held in locals survive the move."""
import numpy as np

from _scenario import log, move


def main():
    grid = np.arange(12, dtype=np.float64).reshape(3, 4)
    mask = grid % 3 == 0
    ints = np.array([1, -2, 3], dtype=np.int16)
    rng = np.random.default_rng(1234)
    first = rng.random(2)
    log("before the move:", grid.shape, ints.tolist())
    move()
    log("grid:", grid.shape, str(grid.dtype), grid.tolist())
    log("mask:", int(mask.sum()), grid[mask].tolist())
    log("ints:", str(ints.dtype), ints.tolist())
    log("first draws:", np.round(first, 8).tolist())
    log("next draws:", np.round(rng.random(3), 8).tolist())
    grid[1] *= 10
    log("mutated:", float(grid.sum()))


main()
