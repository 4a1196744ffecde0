"""Arms the real-program suite's mover (realmove_hook.py, beside this file) in a program
started by tests/real/driver.py (PYTHONPATH holds this folder); does
nothing in any other process."""
import os

if os.environ.get("REALMOVE_PROGRAM"):
    import realmove_hook
    realmove_hook.arm()
