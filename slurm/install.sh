#!/usr/bin/env bash
# Install Debian's Slurm (slurm-wlm: slurmctld, slurmd, client commands) and
# munge, without letting the package scripts start any service: start.sh runs
# the daemons itself.  Idempotent; needs root.
set -euo pipefail
if command -v sbatch >/dev/null 2>&1 && [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && [ -x /usr/sbin/munged ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "slurm/install.sh: slurm-wlm and munge are missing and this is not root: run it as root" >&2
    exit 1
fi
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    own_policy=1
    trap 'rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
if [ "$own_policy" = 1 ]; then
    rm -f "$policy"
    trap - EXIT
fi
