package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

func sign(secret, apiKey string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(apiKey))
	return hex.EncodeToString(m.Sum(nil))
}

// The peer registers a shop whose CRM answers the edit with "info":[] (the
// workaround), stores it in one hash, and refuses a bad token.
func TestRegisterWithEmptyInfoArray(t *testing.T) {
	var edits int
	crm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v5/integration-modules/peer/edit" || r.Header.Get("X-API-KEY") != "key-1" {
			http.Error(w, `{"success":false}`, http.StatusBadRequest)
			return
		}
		edits++
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"success":true,"info":[]}`))
	}))
	defer crm.Close()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	router := newRouter(configFrom(func(k string) string {
		return map[string]string{"MODULE_SECRET": "s3cret", "PUBLIC_URL": "http://module.test"}[k]
	}), rdb)

	register := func(token string) *httptest.ResponseRecorder {
		payload, _ := json.Marshal(map[string]string{"apiKey": "key-1", "systemUrl": crm.URL + "/", "token": token})
		req := httptest.NewRequest(http.MethodPost, "/register", strings.NewReader(url.Values{"register": {string(payload)}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		router.ServeHTTP(rec, req)
		return rec
	}
	rec := register(sign("s3cret", "key-1"))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"success":true`) {
		t.Fatalf("register: %d %s", rec.Code, rec.Body)
	}
	if edits != 1 {
		t.Errorf("edits = %d, want 1", edits)
	}
	if got := mr.HGet("peer:"+crm.URL, "apiKey"); got != "key-1" {
		t.Errorf("stored apiKey = %q", got)
	}
	if rec := register(sign("other", "key-1")); rec.Code != http.StatusUnauthorized {
		t.Errorf("bad token: %d %s", rec.Code, rec.Body)
	}

	cfg := httptest.NewRecorder()
	router.ServeHTTP(cfg, httptest.NewRequest(http.MethodGet, "/config", nil))
	if want := `{"success":true,"scopes":["integration_read","integration_write"],"registerUrl":"http://module.test/register"}`; cfg.Body.String() != want {
		t.Errorf("/config = %s", cfg.Body)
	}
}

// With PEER_SAME_ROUND_TRIPS=1 the peer counts the attempt, checks the
// key's credentials and writes once before the edit: the service's round
// trips.
func TestSameRoundTripsChecksCredentialsFirst(t *testing.T) {
	var paths []string
	crm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"success":true,"scopes":["integration_read","integration_write"]}`))
	}))
	defer crm.Close()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	router := newRouter(configFrom(func(k string) string {
		return map[string]string{"MODULE_SECRET": "s", "PEER_SAME_ROUND_TRIPS": "1"}[k]
	}), rdb)
	payload, _ := json.Marshal(map[string]string{"apiKey": "key-2", "systemUrl": crm.URL, "token": sign("s", "key-2")})
	req := httptest.NewRequest(http.MethodPost, "/register", strings.NewReader(url.Values{"register": {string(payload)}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	router.ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), `"success":true`) {
		t.Fatalf("register: %s", rec.Body)
	}
	if want := []string{"/api/credentials", "/api/v5/integration-modules/peer/edit"}; strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Errorf("CRM calls %v, want %v", paths, want)
	}
	if got := mr.HGet("peer:"+crm.URL, "pending"); got != "key-2" {
		t.Errorf("pending = %q", got)
	}
	if got, _ := mr.Get("peer:attempts:" + crm.URL + ":key-2"); got != "1" {
		t.Errorf("attempts = %q", got)
	}
}
