#!/usr/bin/env bash
# Start a single-node Slurm on this machine, without systemd: munged,
# slurmctld and slurmd (as node "localhost"), all on loopback; wait until the
# node is idle.  Writes /etc/slurm/slurm.conf from slurm.conf.in (refusing to
# overwrite one it did not write) and keeps state, logs and pid files in
# $SLURM_LOCAL_STATE (default /var/lib/pyteleport-slurm).  Idempotent: a
# cluster it started earlier that still answers is left alone.  Needs root;
# run install.sh first.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="${SLURM_LOCAL_STATE:-/var/lib/pyteleport-slurm}"
conf=/etc/slurm/slurm.conf
marker="# pyteleport test cluster"

die() { echo "slurm/start.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (the daemons run as root)"
for exe in /usr/sbin/munged /usr/sbin/slurmctld /usr/sbin/slurmd sinfo; do
    command -v "$exe" >/dev/null 2>&1 || die "$exe is missing: run slurm/install.sh first"
done
if [ -e "$conf" ] && ! head -1 "$conf" | grep -q "^$marker"; then
    die "$conf exists and was not written by this script (a real cluster?): not touching it"
fi

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
node_state() { sinfo -h -N -n localhost -o %t 2>/dev/null | head -1; }

wait_idle() {
    local i
    for i in $(seq 1 150); do
        case "$(node_state)" in
            idle*|mix*|alloc*) return 0 ;;
        esac
        sleep 0.1
    done
    die "the node did not become idle within 15 s: see $state/slurmctld.log and $state/slurmd.log ($(node_state))"
}

if alive "$state/munged.pid" && alive "$state/slurmctld.pid" && alive "$state/slurmd.pid"; then
    wait_idle
    exit 0
fi
# partly up: stop what is left, start afresh
"$here/stop.sh" >/dev/null 2>&1 || true

mkdir -p "$state/ctld" "$state/slurmd" /etc/slurm
chmod 755 "$state"
mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
cpus=16
[ "$(nproc)" -gt "$cpus" ] && cpus=$(nproc)
sed -e "s|@CTLD_HOST@|$(hostname -s)|" -e "s|@STATE@|$state|g" -e "s|@CPUS@|$cpus|" \
    -e "s|@MEMORY@|$mem|" -e "s|@CTLD_PORT@|${SLURM_LOCAL_CTLD_PORT:-6817}|" \
    -e "s|@SLURMD_PORT@|${SLURM_LOCAL_SLURMD_PORT:-6818}|" \
    "$here/slurm.conf.in" > "$conf.tmp"
mv "$conf.tmp" "$conf"

# munge: a key (created by the package; made here if absent), its socket dir
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 755 /run/munge
runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
cp /run/munge/munged.pid "$state/munged.pid"

/usr/sbin/slurmctld -i    # -i: ignore state saved by an earlier run
for i in $(seq 1 50); do alive "$state/slurmctld.pid" && break; sleep 0.1; done
alive "$state/slurmctld.pid" || die "slurmctld did not start: see $state/slurmctld.log"
/usr/sbin/slurmd -N localhost
for i in $(seq 1 50); do alive "$state/slurmd.pid" && break; sleep 0.1; done
alive "$state/slurmd.pid" || die "slurmd did not start: see $state/slurmd.log"
wait_idle
scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
echo "slurm/start.sh: node localhost idle (partitions: $(sinfo -h -o %P | tr '\n' ' '))"
