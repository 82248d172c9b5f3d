package cli

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWatchSignals: once registered, SIGINT cancels the context with the
// signal as its cause; cancel stops watching, after which the context says
// it was cancelled without a signal.
func TestWatchSignals(t *testing.T) {
	ctx, cancel, registered := WatchSignals()
	defer cancel()
	select {
	case <-registered:
	case <-time.After(10 * time.Second):
		t.Fatal("the handlers were never registered")
	}
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGINT))
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("SIGINT did not cancel the context")
	}
	var in *Interrupted
	require.True(t, errors.As(context.Cause(ctx), &in), "%v", context.Cause(ctx))
	assert.Equal(t, os.Interrupt, in.Signal)
	assert.Equal(t, "interrupted by SIGINT", in.Error())

	// Cancelled before the handlers are known to be registered: cancel
	// waits for them (so that it can stop them) and returns.
	ctx2, cancel2, _ := WatchSignals()
	cancel2()
	assert.ErrorIs(t, context.Cause(ctx2), context.Canceled)
}
