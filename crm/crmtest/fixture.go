package crmtest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// Pair is a recorded exchange with the CRM, stored as JSON in testdata/crm.
type Pair struct {
	Name    string `json:"-"`
	Comment string `json:"comment,omitempty"`
	Request struct {
		Method  string            `json:"method"`
		Path    string            `json:"path"`
		Headers map[string]string `json:"headers"`
		Form    map[string]string `json:"form,omitempty"`
	} `json:"request"`
	Response struct {
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
	} `json:"response"`
	// Expect names the outcome the service must draw from the reply:
	// "success" or the crm sentinel error, e.g. "ErrValidation".
	Expect string `json:"expect"`
	// Reason is the CRM's explanation the service must keep, if any.
	Reason string `json:"reason,omitempty"`
}

// Reply is the recorded response as a scripted reply.
func (p Pair) Reply() Reply {
	return Reply{Status: p.Response.Status, Header: p.Response.Headers, Body: p.Response.Body}
}

// Dir is the repository's testdata/crm directory.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "crm")
}

// Fixture loads one recorded pair by file name (without .json).
func Fixture(t testing.TB, name string) Pair {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Dir(), name+".json"))
	if err != nil {
		t.Fatalf("crmtest: fixture %s: %v", name, err)
	}
	var p Pair
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("crmtest: fixture %s: %v", name, err)
	}
	p.Name = name
	return p
}

// Fixtures loads every recorded pair whose name starts with prefix.
func Fixtures(t testing.TB, prefix string) []Pair {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(Dir(), prefix+"*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("crmtest: no fixtures %s*: %v", prefix, err)
	}
	sort.Strings(paths)
	out := make([]Pair, 0, len(paths))
	for _, p := range paths {
		out = append(out, Fixture(t, strings.TrimSuffix(filepath.Base(p), ".json")))
	}
	return out
}
