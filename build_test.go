package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

// buildBinary builds the service for tests that run it as a process. It
// builds with -race when this test binary was built with it: `go test
// -race` has compiled every package that way already, so the build only
// links, where a plain build compiled every dependency a second time
// (about 70 CPU seconds of a cold CI run); and the process is then checked
// for races as well.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "simpleconnect")
	args := []string{"build"}
	if builtWithRace() {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "-o", bin, ".")...)
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	return bin
}

func builtWithRace() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}
