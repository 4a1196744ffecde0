#!/usr/bin/env bash
# Stop exactly the daemons slurm/start.sh started, by their pid files
# (slurmd, slurmctld, munged, in that order), and wait until they are gone.
set -uo pipefail
state="${SLURM_LOCAL_STATE:-/var/lib/pyteleport-slurm}"
for name in slurmd slurmctld munged; do
    pidfile="$state/$name.pid"
    [ -f "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    # only the process of that name: a stale pid file may name someone else now
    if [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$name" ]; then
        kill "$pid" 2>/dev/null
        for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
done
