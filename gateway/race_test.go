//go:build race

package gateway_test

// The race detector keeps shadow memory it never returns, so RSS says
// nothing about leaks under it.
const raceEnabled = true
