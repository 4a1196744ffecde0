#!/usr/bin/env bash
# Installs what tests/test_mpirun.py needs into each given interpreter (its
# virtual environment): mpi4py and MPICH from binary wheels (the `mpich`
# wheel puts mpiexec/mpirun next to the interpreter, where the mpirun backend
# looks first).  Idempotent and quick when already there.
#   .ci/install-mpi.sh [PYTHON...]      (default: python3)
set -euo pipefail
status=0
for python in "${@:-python3}"; do
    bin=$(dirname "$python")
    if "$python" -c "import mpi4py" 2>/dev/null && { [ -x "$bin/mpiexec" ] || [ -x "$bin/mpirun" ]; }; then
        continue
    fi
    if ! "$python" -m pip install -q mpi4py mpich; then
        echo ".ci/install-mpi.sh: could not install mpi4py + mpich for $python (the mpirun tests will be skipped there)" >&2
        status=1
    fi
done
exit $status
