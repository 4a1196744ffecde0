"""Process context changed before the move: cwd, environment, sys.argv, sys.path.

Usage: s15_process_context.py TMPDIR alpha --beta=2
"""
import os
import subprocess
import sys

from _scenario import log, move

work = os.path.join(sys.argv[1], "workdir")
os.makedirs(work, exist_ok=True)
os.chdir(work)
with open("relative.txt", "w") as fh:
    fh.write("found by a relative path\n")
os.environ["SCENARIO_CONTEXT_VAR"] = "value-42"
os.environ.pop("SCENARIO_REMOVED_VAR", None)
sys.argv.append("appended-arg")
sys.path.append("/nonexistent/scenario-marker-dir")


def report():
    log("cwd:", os.path.basename(os.getcwd()), os.path.samefile(os.getcwd(), work))
    with open("relative.txt") as fh:
        log("relative file:", fh.read().strip())
    log("env:", os.environ.get("SCENARIO_CONTEXT_VAR"), os.getenv("SCENARIO_REMOVED_VAR"))
    child = subprocess.run(
        [sys.executable, "-c",
         "import os; print(os.environ.get('SCENARIO_CONTEXT_VAR'), os.environ.get('SCENARIO_REMOVED_VAR'))"],
        capture_output=True, text=True, check=True,
    )
    log("env seen by a child process:", child.stdout.strip())
    log("argv:", os.path.basename(sys.argv[0]), sys.argv[2:])
    log("sys.path:", sys.path[-1], sys.path.count("/nonexistent/scenario-marker-dir"))
    log("interpreter:", sys.executable, sys.version_info[:3])


report()
move()
report()
