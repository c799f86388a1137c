#!/bin/sh
# Start, stop or query the containerd that Kiln's workers, tests and CI use.
#
#   scripts/containerd.sh start    start it unless it already runs (waits until it answers)
#   scripts/containerd.sh stop     stop it (running build containers are left to their shims)
#   scripts/containerd.sh status   exit 0 when it runs and answers, 3 otherwise
#
# It has its own root (/var/lib/kiln-containerd), state and socket
# (/run/kiln-containerd/containerd.sock), so it never touches the host's own
# containerd. Works with cgroup v1 and v2, with or without systemd; on
# production hosts use dist/systemd/kiln-containerd.service instead.
#
# Environment: KILN_CONTAINERD_CONFIG (default: scripts/containerd/config.toml
# beside this script), KILN_CONTAINERD_LOG (default:
# /var/log/kiln-containerd.log), and, to run a second, separate instance,
# KILN_CONTAINERD_ADDRESS (the socket; its directory also holds the state
# and the pid file) and KILN_CONTAINERD_ROOT. Needs root, containerd and runc
# (Debian: apt-get install containerd runc).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
config=${KILN_CONTAINERD_CONFIG:-$here/containerd/config.toml}
logfile=${KILN_CONTAINERD_LOG:-/var/log/kiln-containerd.log}
sock=${KILN_CONTAINERD_ADDRESS:-/run/kiln-containerd/containerd.sock}
root=${KILN_CONTAINERD_ROOT:-/var/lib/kiln-containerd}
rundir=$(dirname "$sock")
pidfile=$rundir/containerd.pid

die() { echo "containerd.sh: $*" >&2; exit 1; }

answers() { ctr --address "$sock" version >/dev/null 2>&1; }

running_pid() {
	[ -f "$pidfile" ] || return 1
	pid=$(cat "$pidfile")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	# The pid must still be a containerd, not a reused number, and alive:
	# a killed containerd whose parent never reaps it stays a zombie.
	case "$(cat /proc/"$pid"/comm 2>/dev/null)" in
	containerd) ;;
	*) return 1 ;;
	esac
	[ "$(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null)" != Z ] || return 1
	echo "$pid"
}

start() {
	[ "$(id -u)" = 0 ] || die "start needs root (containerd manages mounts and cgroups)"
	command -v containerd >/dev/null || die "containerd not found; install it: apt-get install containerd runc"
	command -v runc >/dev/null || die "runc not found; install it: apt-get install runc"
	[ -r "$config" ] || die "config $config not readable; set KILN_CONTAINERD_CONFIG to a containerd config file"
	if pid=$(running_pid) && answers; then
		echo "containerd already running (pid $pid, socket $sock)"
		return 0
	fi
	if pid=$(running_pid); then
		# Started but not answering yet (or hung): give it time below.
		:
	else
		mkdir -p "$rundir" "$root"
		rm -f "$sock" "$sock.ttrpc"
		# Detach from the caller's session so it outlives this shell. The
		# flags repeat the config's defaults so that another instance can
		# run beside (the ttrpc socket follows the address).
		setsid containerd --config "$config" --address "$sock" --root "$root" --state "$rundir/state" \
			>>"$logfile" 2>&1 </dev/null &
		echo $! >"$pidfile"
	fi
	i=0
	while ! answers; do
		i=$((i + 1))
		if [ $i -gt 100 ]; then
			tail -n 20 "$logfile" >&2 || true
			die "containerd did not answer on $sock within 20s; see $logfile"
		fi
		if ! running_pid >/dev/null; then
			tail -n 20 "$logfile" >&2 || true
			die "containerd exited at start; see $logfile"
		fi
		sleep 0.2
	done
	echo "containerd running (pid $(cat "$pidfile"), socket $sock)"
}

stop() {
	if ! pid=$(running_pid); then
		echo "containerd not running"
		rm -f "$pidfile"
		return 0
	fi
	kill -TERM "$pid"
	i=0
	while kill -0 "$pid" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt 100 ]; then
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.1
	done
	rm -f "$pidfile"
	echo "containerd stopped"
}

status() {
	if pid=$(running_pid) && answers; then
		echo "containerd running (pid $pid, socket $sock)"
		return 0
	fi
	echo "containerd not running (socket $sock)"
	return 3
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
	echo "usage: $0 start|stop|status" >&2
	exit 2
	;;
esac
