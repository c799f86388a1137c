package serve_test

import "github.com/hashicorp/go-hclog"

func hclogNull() hclog.Logger { return hclog.NewNullLogger() }
