package store

import (
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	xunix "golang.org/x/sys/unix"
)

// A coordinator cut off from PostgreSQL (a network partition: packets
// dropped, nothing refused) must notice within bounded time on both
// sides, or a write stuck on a dead connection keeps the deposed leader
// alive and its open transaction keeps the leader row locked against the
// standby that would take over:
//
//   - on the coordinator, a connection that has had data unacknowledged
//     for deadAfter fails (TCP_USER_TIMEOUT), and an idle one is probed
//     by keepalives (keepIdle, then every keepInterval, keepCount times);
//     so a statement waiting on a partitioned server fails, the leader's
//     lock connection too (Lease.Hold: its ping), and the coordinator
//     exits;
//   - on PostgreSQL, the session of a partitioned coordinator ends: the
//     lock's connection after idle_session_timeout (Lead), a transaction
//     left open after idleInTx (idle_in_transaction_session_timeout), and
//     any session whose peer stopped answering by the same keepalives and
//     user timeout, set for the server's side of the connection.
const (
	deadAfter    = 15 * time.Second
	keepIdle     = 5 * time.Second
	keepInterval = 2 * time.Second
	keepCount    = 3
	idleInTx     = 10 * time.Second
)

// boundPartitions sets the dial and session parameters above on a
// PostgreSQL connection configuration. Parameters the URL gives are kept.
func boundPartitions(cfg *pgx.ConnConfig) {
	d := &net.Dialer{
		Timeout:         10 * time.Second,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: keepIdle, Interval: keepInterval, Count: keepCount},
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = xunix.SetsockoptInt(int(fd), xunix.IPPROTO_TCP, xunix.TCP_USER_TIMEOUT, int(deadAfter.Milliseconds()))
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	cfg.DialFunc = d.DialContext
	for k, v := range map[string]string{
		"idle_in_transaction_session_timeout": strconv.FormatInt(idleInTx.Milliseconds(), 10),
		"tcp_keepalives_idle":                 strconv.Itoa(int(keepIdle.Seconds())),
		"tcp_keepalives_interval":             strconv.Itoa(int(keepInterval.Seconds())),
		"tcp_keepalives_count":                strconv.Itoa(keepCount),
		"tcp_user_timeout":                    strconv.FormatInt(deadAfter.Milliseconds(), 10),
	} {
		if _, ok := cfg.RuntimeParams[k]; !ok {
			cfg.RuntimeParams[k] = v
		}
	}
}
