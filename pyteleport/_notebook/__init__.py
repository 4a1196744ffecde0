"""Moving a notebook cell (a Jupyter kernel, an IPython shell) and bringing
its results back.

A kernel cannot move: its threads and sockets belong to the notebook
server's connection.  So in a cell, :func:`pyteleport.teleport` moves only
the cell: the frames from the cell's statement to the call, the user
namespace (what earlier cells defined) and the rest of the cell's
statements.  The target runs them and writes the namespace back to a file
(:mod:`.target`); the kernel waits for it, its output reaching the cell as
the target prints it, then takes the namespace in and skips the rest of the
cell, which has already run (:mod:`.kernel`).  ``%%teleport`` runs a whole
cell that way.
"""
