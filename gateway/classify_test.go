package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/tendervm/tender/monitor"
)

// TestClassify covers the failure kinds the example guests cannot produce on
// demand.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		kind   string
	}{
		{&monitor.FaultError{Vector: 14}, http.StatusBadGateway, "fault"},
		{&monitor.CrashError{Detail: "guest halted"}, http.StatusBadGateway, "crash"},
		{&monitor.AbortError{Message: "no"}, http.StatusBadGateway, "abort"},
		{&monitor.ProtocolError{Reason: "bad"}, http.StatusBadGateway, "protocol"},
		{&monitor.StoppedError{Cause: context.DeadlineExceeded}, http.StatusGatewayTimeout, "timeout"},
		{&monitor.StoppedError{Cause: context.Canceled}, StatusClientClosedRequest, "canceled"},
		{fmt.Errorf("queue: %w", monitor.ErrSaturated), http.StatusServiceUnavailable, "saturated"},
		{monitor.ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large"},
		{monitor.ErrClosed, http.StatusServiceUnavailable, "closed"},
		{errors.New("mmap: out of memory"), http.StatusInternalServerError, "internal"},
	} {
		o, status := classify(tc.err)
		if status != tc.status || o.String() != tc.kind {
			t.Errorf("%v: %d %s, want %d %s", tc.err, status, o, tc.status, tc.kind)
		}
	}
}
