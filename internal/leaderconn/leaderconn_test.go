package leaderconn

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/internal/grpcerr"
)

// serve runs a gRPC server on loopback: a leader (the health service) or,
// with standby set, a standby naming leader.
func serve(t *testing.T, standby bool, leader string) string {
	t.Helper()
	var opts []grpc.ServerOption
	if standby {
		opts = append(opts, grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
			return grpcerr.StandbyStatus(leader).Err()
		}))
	}
	gs := grpc.NewServer(opts...)
	if !standby {
		healthpb.RegisterHealthServer(gs, health.NewServer())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return ln.Addr().String()
}

// gone is an address nothing listens on.
func gone(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestCallsReachTheLeader(t *testing.T) {
	t.Parallel()
	leader := serve(t, false, "")
	for name, addrs := range map[string][]string{
		"standby first":            {serve(t, true, leader), leader},
		"standby naming the third": {serve(t, true, leader), serve(t, true, ""), leader},
		"standby not knowing":      {serve(t, true, ""), leader},
		"first gone":               {gone(t), leader},
		"leader first":             {leader, gone(t)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := New(addrs, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			cl := healthpb.NewHealthClient(c)
			if _, err := cl.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatalf("check: %v", err)
			}
			if c.Current() != leader {
				t.Fatalf("calls go to %s, want the leader %s", c.Current(), leader)
			}
		})
	}
}

// A stream to a standby fails UNAVAILABLE, reason STANDBY, and the next
// one goes to the leader the standby named.
func TestStreamMovesOnFromStandby(t *testing.T) {
	t.Parallel()
	leader := serve(t, false, "")
	standby := serve(t, true, leader)
	c, err := New([]string{standby, leader}, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl := healthpb.NewHealthClient(c)
	s, err := cl.Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.Unavailable || grpcerr.Classify(err) != grpcerr.Standby || grpcerr.LeaderOf(err) != leader {
		t.Fatalf("watch on the standby: %v, want UNAVAILABLE naming %s", err, leader)
	}
	s, err = cl.Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatalf("watch on the leader: %v", err)
	}
}

func TestSplit(t *testing.T) {
	t.Parallel()
	if got := Split(" a:1, b:2,,c:3 "); len(got) != 3 || got[0] != "a:1" || got[2] != "c:3" {
		t.Fatalf("split: %q", got)
	}
	if _, err := New(Split(" , ")); err == nil {
		t.Fatal("no addresses: no error")
	}
}
