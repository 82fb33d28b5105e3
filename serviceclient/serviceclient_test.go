package serviceclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/app"
	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/seal"
	"github.com/modulehub/simpleconnect/serviceclient"
	"github.com/modulehub/simpleconnect/store/storetest"
	"github.com/modulehub/simpleconnect/tokens"
	"github.com/modulehub/simpleconnect/verify"
)

const (
	svcToken = "service-token-client-0001"
	secret   = "module-secret-client"
)

// The package is for other modules: it must not pull in the service (only
// package tokens, which itself imports nothing of the service).
func TestThePackageImportsNothingOfTheService(t *testing.T) {
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		parsed, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		require.NoError(t, err)
		for _, imp := range parsed.Imports {
			if imp.Path.Value == `"github.com/modulehub/simpleconnect/tokens"` {
				continue
			}
			assert.NotContains(t, imp.Path.Value, "github.com/modulehub/simpleconnect", "%s imports %s", f, imp.Path.Value)
		}
	}
}

type env struct {
	fake   *crmtest.Fake
	srv    *httptest.Server
	app    *app.App
	prefix string
	rdb    redis.UniversalClient
}

// start runs the service as app.New builds it on the backend's Redis.
func start(t *testing.T, b *storetest.Backend) *env {
	t.Helper()
	var u string
	switch b.Name {
	case "miniredis":
		u = "redis://" + b.MR.Addr()
	case "redis":
		u = os.Getenv("REDIS_URL")
	default:
		t.Skip("a Redis Cluster is not a REDIS_URL")
	}
	cfg := config.Config{
		ListenAddr: "127.0.0.1:0", PublicURL: "http://module.test", ModuleCode: "demo",
		ModuleSecrets: []redact.Secret{secret}, ModuleScopes: []string{"integration_read", "integration_write"},
		RedisURL: redact.Secret(u), RedisKeyPrefix: b.Prefix, EncryptionKeys: config.EncryptionKeys{seal.NewRandomKey()},
		CRMAllowInsecure: true, CRMTimeout: 2 * time.Second, SessionTTL: time.Hour, ShutdownTimeout: time.Second,
		LogFormat: "text", ServiceTokens: []redact.Secret{svcToken}, TokenSigningKeys: config.SigningKeys{tokens.NewSeed()},
	}.WithDefaults()
	require.NoError(t, cfg.Validate())
	a, err := app.New(t.Context(), cfg, app.NewLogger(io.Discard, "text", 0), app.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	srv := httptest.NewServer(a.Server.Handler)
	t.Cleanup(srv.Close)
	return &env{fake: crmtest.New(t), srv: srv, app: a, prefix: b.Prefix, rdb: b.Raw}
}

func (e *env) connect(t *testing.T, key string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"apiKey": key, "systemUrl": e.fake.URL, "token": verify.Sign(secret, redact.Secret(key))})
	resp, err := http.PostForm(e.srv.URL+"/register", url.Values{"register": {string(body)}})
	require.NoError(t, err)
	_ = resp.Body.Close()
	acc, err := e.app.Store.FindBySystemURL(t.Context(), e.fake.URL)
	require.NoError(t, err)
	return acc.ID
}

func eachRedis(t *testing.T, fn func(t *testing.T, b *storetest.Backend)) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		if b.Name == "cluster" {
			t.Skip("a Redis Cluster is not a REDIS_URL")
		}
		fn(t, b)
	})
}

func TestCredentialsAndTheProxyClient(t *testing.T) {
	eachRedis(t, func(t *testing.T, b *storetest.Backend) {
		e := start(t, b)
		id := e.connect(t, "key-client")
		c, err := serviceclient.New(e.srv.URL, svcToken)
		require.NoError(t, err)

		creds, err := c.Credentials(t.Context(), id)
		require.NoError(t, err)
		assert.Equal(t, "key-client", creds.APIKey)
		assert.Equal(t, e.fake.URL, creds.SystemURL)
		assert.True(t, creds.Active)
		assert.NotContains(t, creds.String(), "key-client", "printing credentials never shows the key")

		_, err = c.Credentials(t.Context(), "01AAAAAAAAAAAAAAAAAAAAAAAA")
		assert.ErrorIs(t, err, serviceclient.ErrNotFound)
		wrong, err := serviceclient.New(e.srv.URL, "service-token-wrong-00001")
		require.NoError(t, err)
		_, err = wrong.Credentials(t.Context(), id)
		assert.ErrorIs(t, err, serviceclient.ErrUnauthorized)

		base, hc := c.Proxy(id)
		resp, err := hc.Get(base + "/api/v5/orders?limit=20")
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode, string(body))
		last := e.fake.Calls()[len(e.fake.Calls())-1]
		assert.Equal(t, "/api/v5/orders", last.Path)
		assert.Equal(t, "key-client", last.APIKey())
		assert.Empty(t, last.Header.Get("Authorization"), "the service token stays with the service")
	})
}

func TestAWorkerGetsAShopTokenAndVerifiesIt(t *testing.T) {
	eachRedis(t, func(t *testing.T, b *storetest.Backend) {
		e := start(t, b)
		id := e.connect(t, "key-token-client")
		c, err := serviceclient.New(e.srv.URL, svcToken)
		require.NoError(t, err)
		tok, err := c.Token(t.Context(), id)
		require.NoError(t, err)
		claims, err := c.Verifier("http://module.test", "demo").Verify(t.Context(), tok.Token)
		require.NoError(t, err)
		assert.Equal(t, id, claims.AccountID())
		_, err = c.Verifier("http://module.test", "another-module").Verify(t.Context(), tok.Token)
		assert.ErrorIs(t, err, tokens.ErrInvalid)
		_, err = c.Token(t.Context(), "01AAAAAAAAAAAAAAAAAAAAAAAA")
		assert.ErrorIs(t, err, serviceclient.ErrNotFound)
	})
}

func TestTheTokenGoesToTheServiceOnly(t *testing.T) {
	var got []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
	}))
	t.Cleanup(other.Close)
	c, err := serviceclient.New("http://service.invalid", svcToken)
	require.NoError(t, err)
	resp, err := c.HTTPClient().Get(other.URL)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, []string{""}, got, "another host never sees the token")
	_, err = serviceclient.New("service.example.com", svcToken)
	assert.Error(t, err, "a base URL without a scheme is refused")
}

func TestTheConsumerHandsEveryEventOnceAckedAndResumesAfterACrash(t *testing.T) {
	eachRedis(t, func(t *testing.T, b *storetest.Backend) {
		e := start(t, b)
		first := serviceclient.NewConsumer(e.rdb, e.prefix, "provisioning", "worker-1")
		first.Start, first.Block = "0", 50*time.Millisecond
		id := e.connect(t, "key-events")

		// The first run fails on the event, as a crash mid-way would leave it.
		crash := errors.New("provisioning failed")
		err := first.Run(t.Context(), func(context.Context, serviceclient.Event) error { return crash })
		require.ErrorIs(t, err, crash)

		// The same worker, restarted, gets it again first.
		again := serviceclient.NewConsumer(e.rdb, e.prefix, "provisioning", "worker-1")
		again.Block = 50 * time.Millisecond
		var seen []serviceclient.Event
		ctx, stop := context.WithCancel(t.Context())
		err = again.Run(ctx, func(_ context.Context, ev serviceclient.Event) error {
			seen = append(seen, ev)
			stop()
			return nil
		})
		require.NoError(t, err)
		require.Len(t, seen, 1)
		assert.Equal(t, serviceclient.EventConnected, seen[0].Type)
		assert.Equal(t, id, seen[0].AccountID)
		assert.Equal(t, e.fake.URL, seen[0].SystemURL)
		assert.Equal(t, "active", seen[0].Status)
		assert.False(t, seen[0].At.IsZero())

		pending, err := e.rdb.XPending(t.Context(), serviceclient.EventsStream(e.prefix), "provisioning").Result()
		require.NoError(t, err)
		assert.Zero(t, pending.Count, "handled means acknowledged")
	})
}

func TestAnotherMemberTakesOverWhatACrashedOneLeft(t *testing.T) {
	eachRedis(t, func(t *testing.T, b *storetest.Backend) {
		e := start(t, b)
		crashed := serviceclient.NewConsumer(e.rdb, e.prefix, "billing", "worker-a")
		crashed.Start, crashed.Block = "0", 50*time.Millisecond
		e.connect(t, "key-claim")
		require.Error(t, crashed.Run(t.Context(), func(context.Context, serviceclient.Event) error { return errors.New("crash") }))

		other := serviceclient.NewConsumer(e.rdb, e.prefix, "billing", "worker-b")
		other.Block, other.ClaimIdle = 50*time.Millisecond, 0 // take over at once
		var seen []string
		ctx, stop := context.WithCancel(t.Context())
		require.NoError(t, other.Run(ctx, func(_ context.Context, ev serviceclient.Event) error {
			seen = append(seen, ev.Type)
			stop()
			return nil
		}))
		assert.Equal(t, []string{serviceclient.EventConnected}, seen)
	})
}
