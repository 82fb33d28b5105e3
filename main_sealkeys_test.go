package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/seal"
	"github.com/modulehub/simpleconnect/store"
)

// A deploy that dropped the key which sealed stored accounts must not
// start: every login and callback of those shops would fail one by one.
func TestAStartWithDataSealedByAKeyNoLongerListedRefusesNamingIt(t *testing.T) {
	mr := miniredis.RunT(t)
	oldKey, newKey := seal.NewRandomKey(), seal.NewRandomKey()
	s, err := store.New(redis.NewClient(&redis.Options{Addr: mr.Addr()}), "simpleconnect", oldKey)
	require.NoError(t, err)
	at, err := s.BeginConnect(t.Context(), "https://shop.retailcrm.ru", "key-1")
	require.NoError(t, err)
	require.NoError(t, s.Release(t.Context(), at.Lease))
	require.NoError(t, s.Close())

	cmd := exec.Command(buildBinary(t))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = []string{
		"MODULE_CODE=demo", "MODULE_SECRETS=secret", "LISTEN_ADDR=127.0.0.1:0",
		"REDIS_URL=redis://" + mr.Addr(), "ENCRYPTION_KEY=" + base64.StdEncoding.EncodeToString(newKey),
	}
	err = cmd.Run()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "the process must exit, not serve: %v\n%s", err, stderr.String())
	assert.NotEqual(t, 0, exit.ExitCode())
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	last := lines[len(lines)-1]
	assert.Contains(t, last, "ENCRYPTION_KEY", "the one line names the variable")
	assert.Contains(t, last, seal.FormatKeyID(seal.KeyID(oldKey)), "and the missing key id")
	for _, k := range [][]byte{oldKey, newKey} {
		assert.NotContains(t, stderr.String(), base64.StdEncoding.EncodeToString(k), "never a key")
	}

	// Listing the old key again (after the new one) starts.
	p := startProcess(t, "MODULE_CODE=demo", "MODULE_SECRETS=secret", "REDIS_URL=redis://"+mr.Addr(),
		"ENCRYPTION_KEY="+base64.StdEncoding.EncodeToString(newKey)+","+base64.StdEncoding.EncodeToString(oldKey))
	require.NotEmpty(t, p.addr)
}
