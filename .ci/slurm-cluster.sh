#!/usr/bin/env bash
# A real two-node Slurm on this one machine, for the slurm backend's conformance tests (tests/conformance/test_slurm.py).
#
#   .ci/slurm-cluster.sh install   Debian 12's slurmctld, slurmd, slurm-client, munge and runc (slurm-wlm 22.05)
#   .ci/slurm-cluster.sh start     munge, a bridge, two slurmd (node1, node2) each in its own network + UTS namespace,
#                                  slurmctld on the bridge's address; returns once both nodes are idle
#   .ci/slurm-cluster.sh stop      everything start made, removed again
#   .ci/slurm-cluster.sh status    sinfo
#
# As root, without systemd. The facts behind each line were checked on this kind of machine (shared/SLURM.md):
# - `ip netns exec` remounts /sys and slurmd then finds no cgroup file system: nsenter --net + unshare --uts instead,
#   and slurmd stays in the host's mount namespace (an OCI bundle's rootfs mounted later stays visible to it);
# - Docker's br_netfilter with FORWARD policy DROP drops node-to-node traffic on a plain bridge: one ACCEPT rule;
# - no default route in the namespaces: DNS would time out and torch's c10d reverse lookups cost ~10 s each;
# - proctrack/linuxproc + task/none: no cgroup.conf; MinJobAge=3600: without accounting, squeue -t all shows a
#   finished job for an hour;
# - oci.conf: runc (crun fails on this machine's hybrid cgroup layout); %n keeps the two nodes' containers apart.
set -euo pipefail

BRIDGE=tlslurm0
NET=10.99.0
CONTROLLER="$NET.1"
NODES=(node1 node2)
CONF=/etc/slurm
STATE=/run/tl-slurm
MARK_BEGIN="# BEGIN torch-launcher slurm-cluster"
MARK_END="# END torch-launcher slurm-cluster"
SHORT_HOST="$(hostname -s)"

log() { printf '[slurm-cluster] %s\n' "$*" >&2; }

install_packages() {
    export DEBIAN_FRONTEND=noninteractive
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null && command -v runc >/dev/null; then
        return
    fi
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge runc >/dev/null
}

start_munge() {
    install -d -o munge -g munge -m 0755 /run/munge
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return
    fi
    runuser -u munge -- /usr/sbin/munged
    touch "$STATE/munged-started"
    munge -n | unmunge >/dev/null
}

write_config() {
    mkdir -p "$CONF" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    cat >"$CONF/slurm.conf" <<EOF
# written by .ci/slurm-cluster.sh
ClusterName=tl
SlurmctldHost=$SHORT_HOST($CONTROLLER)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd/%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=30
MinJobAge=3600
NodeName=node1 NodeAddr=$NET.11 CPUs=2 RealMemory=2000 State=UNKNOWN
NodeName=node2 NodeAddr=$NET.12 CPUs=2 RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=node[1-2] Default=YES MaxTime=INFINITE State=UP
EOF
    local runc="runc --rootless=true --root=/run/RUNCROOT/%u"
    cat >"$CONF/oci.conf" <<EOF
# written by .ci/slurm-cluster.sh
RunTimeQuery="$runc state %n.%u.%j.%s.%t"
RunTimeKill="$runc kill -a %n.%u.%j.%s.%t"
RunTimeDelete="$runc delete --force %n.%u.%j.%s.%t"
RunTimeRun="$runc run %n.%u.%j.%s.%t -b %b"
EOF
}

hosts_entries() {
    remove_hosts_entries
    { echo "$MARK_BEGIN"; echo "$NET.11 node1"; echo "$NET.12 node2"; echo "$MARK_END"; } >>/etc/hosts
}

remove_hosts_entries() {
    # /etc/hosts may be a bind mount (containers): rewrite it in place, never replace the file
    local kept
    kept="$(sed "/^$MARK_BEGIN\$/,/^$MARK_END\$/d" /etc/hosts)"
    printf '%s\n' "$kept" >/etc/hosts
}

network() {
    ip link add "$BRIDGE" type bridge
    ip addr add "$CONTROLLER/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    if command -v iptables >/dev/null && ! iptables -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null; then
        iptables -I FORWARD 1 -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
    fi
    local i=11 node
    for node in "${NODES[@]}"; do
        ip netns add "tl-$node"
        ip link add "tlv-$node" type veth peer name "tlp-$node"
        ip link set "tlp-$node" netns "tl-$node"
        ip link set "tlv-$node" master "$BRIDGE" up
        ip -n "tl-$node" link set lo up
        ip -n "tl-$node" link set "tlp-$node" name eth0
        ip -n "tl-$node" addr add "$NET.$i/24" dev eth0
        ip -n "tl-$node" link set eth0 up  # no default route (see the header)
        i=$((i + 1))
    done
}

start() {
    if [ -e "$STATE/started" ]; then
        log "already started (stop it first)"; return 0
    fi
    install_packages
    mkdir -p "$STATE"
    start_munge
    write_config
    hosts_entries
    network
    slurmctld
    local node
    for node in "${NODES[@]}"; do
        nsenter --net="/run/netns/tl-$node" unshare --uts sh -c "hostname $node && exec slurmd -N $node"
    done
    touch "$STATE/started"
    local waited=0
    until [ "$(sinfo -h -N -o '%N %t' 2>/dev/null | grep -c ' idle')" -eq "${#NODES[@]}" ]; do
        if [ "$waited" -ge 60 ]; then
            log "the nodes are not idle after 60 s:"; sinfo -N >&2 || true; tail -20 /var/log/slurm/*.log >&2 || true
            return 1
        fi
        sleep 0.5; waited=$((waited + 1))
    done
    log "up: $(sinfo -h -N -o '%N %t' | tr '\n' ' ')"
}

stop() {
    scancel --full --quiet --state=RUNNING,PENDING --user=root 2>/dev/null || true
    local pidfile pid
    for pidfile in /run/slurmd-node1.pid /run/slurmd-node2.pid /run/slurmctld.pid; do
        [ -f "$pidfile" ] || continue
        pid="$(cat "$pidfile")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$pidfile"
    done
    local node
    for node in "${NODES[@]}"; do
        ip link del "tlv-$node" 2>/dev/null || true
        ip netns del "tl-$node" 2>/dev/null || true
    done
    if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
    if command -v iptables >/dev/null; then
        while iptables -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null; do
            iptables -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
        done
    fi
    remove_hosts_entries
    if [ -e "$STATE/munged-started" ] && [ -f /run/munge/munged.pid ]; then
        kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
    fi
    rm -rf "$STATE" /var/spool/slurmctld/* /var/spool/slurmd/*
    log "stopped"
}

case "${1:-}" in
    install) install_packages ;;
    start) start ;;
    stop) stop ;;
    status) sinfo -N ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
