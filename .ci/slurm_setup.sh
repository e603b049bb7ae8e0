#!/usr/bin/env bash
# A single-node Slurm on this machine, for tests/test_slurm.py: run as root on Debian/Ubuntu.
#   sudo .ci/slurm_setup.sh && sinfo
# Installs Debian's slurm-wlm and munge, writes /etc/slurm/slurm.conf for this one node (its CPUs
# and memory as `slurmd -C` reports them; one partition, `debug`), and starts munged, slurmctld and
# slurmd as plain daemons (no systemd: CI machines and containers lack it). Running it again
# restarts nothing that already answers. No accounting database (slurmdbd): `sacct` has nothing,
# `scontrol show job` and squeue know the jobs (for MinJobAge, 300 s, after they end).
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "slurm_setup: needs root (apt-get, daemons)" >&2; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
    || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

# munge authenticates every Slurm message; its key is made by the package (mungekey if not)
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
if ! munge -n >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 10); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 1; done
munge -n | unmunge >/dev/null

node=$(hostname -s)
# "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
hardware=$(slurmd -C | head -n 1 | cut -d' ' -f2-)
install -d -o slurm -g slurm /var/lib/slurm/slurmctld /var/log/slurm
install -d /var/lib/slurm/slurmd
cat > /etc/slurm/slurm.conf <<EOF
# Written by lossbench's .ci/slurm_setup.sh: one node, this machine.
ClusterName=lossbench
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# no cgroups (containers and VMs often do not delegate them): track processes by their parents
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# cores are what jobs ask for (--cpus-per-task), so one job per core runs at once
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=${node} NodeAddr=127.0.0.1 ${hardware} State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP
EOF

# daemons already running (their pid files name live processes) are kept, others started
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
running /run/slurmctld.pid || slurmctld
running /run/slurmd.pid || slurmd
for _ in $(seq 60); do  # the node registers within seconds
    state=$(sinfo -h -n "$node" -o %T 2>/dev/null || true)
    case "$state" in idle*|mix*|alloc*) break ;; esac
    sleep 1
done
sinfo
case "$state" in idle*|mix*|alloc*) ;; *) echo "slurm_setup: node $node is '${state:-unknown}', not idle" >&2; exit 1 ;; esac
