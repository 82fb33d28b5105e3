package serviceapi_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/app"
	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/store/storetest"
	"github.com/modulehub/simpleconnect/tokens"
)

func withTokenKey() envOption {
	return func(c *config.Config, _ *app.Options) { c.TokenSigningKeys = config.SigningKeys{tokens.NewSeed()} }
}

func TestATokenForTheModulesAppsNamesARunningShop(t *testing.T) {
	eachRedis(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, nil, withTokenKey())
		acc := e.connect("key-token-0123456789")
		path := "/service/api/accounts/" + acc.ID + "/token"

		r := e.call(0, http.MethodPost, path, serviceToken, nil, nil)
		require.Equal(t, http.StatusOK, r.StatusCode, r.body)
		assert.Equal(t, "no-store", r.Header.Get("Cache-Control"))
		var tok tokens.Token
		require.NoError(t, json.Unmarshal([]byte(r.body), &tok))
		e.secrets = append(e.secrets, tok.Token)
		v := &tokens.Verifier{JWKSURL: e.srvs[0].URL + "/.well-known/jwks.json", Issuer: e.cfg.PublicURL, Audience: e.cfg.ModuleCode}
		claims, err := v.Verify(t.Context(), tok.Token)
		require.NoError(t, err, "it verifies against the service's JWKS")
		assert.Equal(t, acc.ID, claims.AccountID())
		assert.Equal(t, acc.SystemURL, claims.SystemURL)
		e.assertNoKeyIn(r.body, tok.Token)

		assert.Equal(t, "unauthorized", e.call(0, http.MethodPost, path, adminToken, nil, nil).problem(t, http.StatusUnauthorized), "an admin token opens no service route")
		assert.Equal(t, "not_found", e.call(0, http.MethodPost, "/service/api/accounts/01AAAAAAAAAAAAAAAAAAAAAAAA/token", serviceToken, nil, nil).problem(t, http.StatusNotFound))

		// The proxy's rule: every state it refuses, the token route refuses,
		// naming it.
		for _, h := range []store.KeyHealth{store.KeyRevoked, store.KeyScopesMissing} {
			_, _, err = e.store().SetKeyHealth(t.Context(), acc.ID, acc.KeySeq, h, nil)
			require.NoError(t, err)
			r = e.call(0, http.MethodPost, path, serviceToken, nil, nil)
			assert.Equal(t, string(h), r.problem(t, http.StatusConflict), "no token for a shop whose key the health check found dead")
			assert.Contains(t, r.body, string(h), "the problem names the state")
			assert.NotContains(t, r.body, "token\"")
		}
		_, _, err = e.store().SetKeyHealth(t.Context(), acc.ID, acc.KeySeq, store.KeyHealthy, nil)
		require.NoError(t, err)
		_, err = e.store().SetActivity(t.Context(), acc.ID, store.State{Active: true, Frozen: true}, store.Lease{})
		require.NoError(t, err)
		assert.Equal(t, "frozen", e.call(0, http.MethodPost, path, serviceToken, nil, nil).problem(t, http.StatusConflict))
		_, err = e.store().SetActivity(t.Context(), acc.ID, store.State{}, store.Lease{})
		require.NoError(t, err)
		assert.Equal(t, "inactive", e.call(0, http.MethodPost, path, serviceToken, nil, nil).problem(t, http.StatusConflict), "no token for a shop whose module is off")
	})
}

func TestWithoutASigningKeyTheTokenRouteDoesNotExist(t *testing.T) {
	eachRedis(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, nil)
		acc := e.connect("key-notoken-0123456789")
		r := e.call(0, http.MethodPost, "/service/api/accounts/"+acc.ID+"/token", serviceToken, nil, nil)
		assert.Equal(t, "not_found", r.problem(t, http.StatusNotFound))
	})
}
