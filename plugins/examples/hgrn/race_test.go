//go:build race

package hgrn

// raceEnabled reports a build with the race detector, under which
// sync.Pool drops values and allocation counts mean nothing.
const raceEnabled = true
