package docs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/app"
	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/docs"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/verify"
)

const (
	adminToken   = "admin-token-openapi-0001"
	serviceToken = "service-token-openapi-01"
	secret       = "module-secret-openapi"
)

func load(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(docs.OpenAPI)
	require.NoError(t, err)
	require.NoError(t, doc.Validate(context.Background()), "the document is valid OpenAPI")
	require.True(t, doc.IsOpenAPI31OrLater())
	return doc
}

// service is one instance as app.New builds it, on the embedded store.
type service struct {
	srv  *httptest.Server
	app  *app.App
	fake *crmtest.Fake
}

func start(t *testing.T, o app.Options, rate int, fakeOpts ...crmtest.Option) *service {
	t.Helper()
	cfg := config.Config{
		ListenAddr: "127.0.0.1:0", PublicURL: "http://module.test", ModuleCode: "demo",
		ModuleSecrets: []redact.Secret{secret}, ModuleScopes: []string{"integration_read", "integration_write"},
		RedisKeyPrefix: "openapi", CRMAllowInsecure: true, CRMTimeout: 2 * time.Second, SessionTTL: time.Hour,
		ShutdownTimeout: time.Second, LogFormat: "text", CRMRatePerSecond: rate,
		AdminTokens: []redact.Secret{adminToken}, ServiceTokens: []redact.Secret{serviceToken},
	}.WithDefaults()
	require.NoError(t, cfg.Validate())
	a, err := app.New(t.Context(), cfg, app.NewLogger(io.Discard, "text", 0), o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	s := &service{srv: httptest.NewServer(a.Server.Handler), app: a}
	t.Cleanup(s.srv.Close)
	s.fake = crmtest.New(t, fakeOpts...)
	return s
}

// connect registers a shop at fake with key; returns its account.
func (s *service) connect(t *testing.T, fake *crmtest.Fake, key string) store.Account {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"apiKey": key, "systemUrl": fake.URL, "token": verify.Sign(secret, redact.Secret(key))})
	resp, err := http.PostForm(s.srv.URL+"/register", url.Values{"register": {string(body)}})
	require.NoError(t, err)
	_ = resp.Body.Close()
	acc, err := s.app.Store.FindBySystemURL(t.Context(), fake.URL)
	require.NoError(t, err)
	return acc
}

// checker sends requests and validates every reply against the document.
type checker struct {
	t    *testing.T
	doc  *openapi3.T
	seen map[string]bool // "METHOD template status", and "… status code" for a problem
}

// check sends method path (as written) with token to s, then validates
// the reply against the operation of template. It returns the status.
func (c *checker) check(s *service, method, template, path, token string, body io.Reader, contentType string) int {
	t := c.t
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, s.srv.URL, body)
	require.NoError(t, err)
	req.URL, err = url.Parse(s.srv.URL + path)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	_ = resp.Body.Close()

	item := c.doc.Paths.Value(template)
	require.NotNil(t, item, "%s is in the document", template)
	op := item.GetOperation(method)
	require.NotNil(t, op, "%s %s is in the document", method, template)
	in := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: pathParams(template, path),
		Route:   &routers.Route{Spec: c.doc, Path: template, PathItem: item, Method: method, Operation: op},
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	err = openapi3filter.ValidateResponse(t.Context(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body:    io.NopCloser(bytes.NewReader(raw)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true},
	})
	assert.NoError(t, err, "%s %s → %d %s", method, path, resp.StatusCode, raw)
	c.seen[method+" "+template+" "+strconv.Itoa(resp.StatusCode)] = true
	var p struct {
		Error struct{ Code string } `json:"error"`
	}
	if json.Unmarshal(raw, &p) == nil && p.Error.Code != "" {
		c.seen[method+" "+template+" "+strconv.Itoa(resp.StatusCode)+" "+p.Error.Code] = true
	}
	return resp.StatusCode
}

// pathParams reads the template's parameters out of path; {path} takes
// the rest.
func pathParams(template, path string) map[string]string {
	out := map[string]string{}
	tp, pp := strings.Split(template, "/"), strings.Split(strings.SplitN(path, "?", 2)[0], "/")
	for i, seg := range tp {
		if i >= len(pp) {
			break
		}
		if strings.HasPrefix(seg, "{") {
			name := strings.Trim(seg, "{}")
			if name == "path" {
				out[name] = strings.Join(pp[i:], "/")
				break
			}
			out[name] = pp[i]
		}
	}
	return out
}

func TestEveryRouteAnswersAsTheOpenAPIDocumentSays(t *testing.T) {
	doc := load(t)
	c := &checker{t: t, doc: doc, seen: map[string]bool{}}
	s := start(t, app.Options{}, 0, crmtest.API("GET", "/api/v5/reference/sites", crmtest.Status(401)))
	acc := s.connect(t, s.fake, "key-openapi")
	pendingCRM := crmtest.New(t, crmtest.Edit("key-pending", crmtest.Status(503)))
	pending := s.connect(t, pendingCRM, "key-pending")
	gone := crmtest.New(t)
	unreachable := s.connect(t, gone, "key-gone")
	gone.Close()
	const unknown = "01AAAAAAAAAAAAAAAAAAAAAAAA"

	// The admin API.
	a := "/admin/api"
	c.check(s, "GET", a+"/accounts", a+"/accounts", adminToken, nil, "")
	c.check(s, "GET", a+"/accounts", a+"/accounts?status=pending&limit=1", adminToken, nil, "")
	c.check(s, "GET", a+"/accounts", a+"/accounts?limit=0", adminToken, nil, "")
	c.check(s, "GET", a+"/accounts", a+"/accounts", "", nil, "")
	c.check(s, "GET", a+"/accounts", a+"/accounts", serviceToken, nil, "")
	c.check(s, "GET", a+"/accounts/{id}", a+"/accounts/"+acc.ID, adminToken, nil, "")
	c.check(s, "GET", a+"/accounts/{id}", a+"/accounts/"+unknown, adminToken, nil, "")
	c.check(s, "POST", a+"/accounts/{id}/resync", a+"/accounts/"+acc.ID+"/resync", adminToken, nil, "")
	c.check(s, "POST", a+"/accounts/{id}/resync", a+"/accounts/"+pending.ID+"/resync", adminToken, nil, "")
	c.check(s, "POST", a+"/accounts/{id}/resync", a+"/accounts/"+unreachable.ID+"/resync", adminToken, nil, "")
	c.check(s, "POST", a+"/accounts/{id}/deactivate", a+"/accounts/"+unknown+"/deactivate", adminToken, nil, "")
	c.check(s, "POST", a+"/accounts/{id}/deactivate", a+"/accounts/"+pending.ID+"/deactivate", adminToken, nil, "")
	c.check(s, "GET", a+"/events", a+"/events?limit=2", adminToken, nil, "")
	c.check(s, "GET", a+"/events", a+"/events?after=nope", adminToken, nil, "")
	c.check(s, "POST", a+"/reseal", a+"/reseal", adminToken, nil, "")
	c.check(s, "GET", a+"/openapi.yaml", a+"/openapi.yaml", adminToken, nil, "")
	c.check(s, "GET", a+"/openapi.yaml", a+"/openapi.yaml", serviceToken, nil, "")

	// The service API.
	v := "/service/api/accounts/{id}"
	creds := func(id string) string { return "/service/api/accounts/" + id + "/credentials" }
	c.check(s, "GET", v+"/credentials", creds(acc.ID), serviceToken, nil, "")
	c.check(s, "GET", v+"/credentials", creds(acc.ID), adminToken, nil, "")
	c.check(s, "GET", v+"/credentials", creds(unknown), serviceToken, nil, "")
	c.check(s, "GET", v+"/credentials", creds(pending.ID), serviceToken, nil, "")
	c.check(s, "GET", "/service/api/openapi.yaml", "/service/api/openapi.yaml", serviceToken, nil, "")
	c.check(s, "GET", "/service/api/openapi.yaml", "/service/api/openapi.yaml", adminToken, nil, "")
	tok := func(id string) string { return "/service/api/accounts/" + id + "/token" } // the embedded store signs with an ephemeral key
	c.check(s, "POST", v+"/token", tok(acc.ID), serviceToken, nil, "")
	c.check(s, "POST", v+"/token", tok(acc.ID), adminToken, nil, "")
	c.check(s, "POST", v+"/token", tok(unknown), serviceToken, nil, "")
	c.check(s, "POST", v+"/token", tok(pending.ID), serviceToken, nil, "")

	p := v + "/crm/{path}"
	crmPath := func(id, rest string) string { return "/service/api/accounts/" + id + "/crm/" + rest }
	c.check(s, "GET", p, crmPath(acc.ID, "api/v5/orders?limit=20"), serviceToken, nil, "")
	c.check(s, "HEAD", p, crmPath(acc.ID, "api/v5/orders"), serviceToken, nil, "")
	c.check(s, "POST", p, crmPath(acc.ID, "api/v5/orders/create"), serviceToken,
		strings.NewReader(url.Values{"order": {`{"firstName":"Ann"}`}}.Encode()), "application/x-www-form-urlencoded")
	c.check(s, "POST", p, crmPath(acc.ID, "api/v5/orders/create"), serviceToken,
		strings.NewReader(strings.Repeat("a", 8<<20+1)), "application/x-www-form-urlencoded") // over the cap
	c.check(s, "GET", p, crmPath(acc.ID, "api/v5/reference/sites"), serviceToken, nil, "") // the CRM's own 401
	c.check(s, "GET", p, crmPath(acc.ID, "api/../../credentials"), serviceToken, nil, "")
	c.check(s, "GET", p, crmPath(acc.ID, "api/v5/orders"), "", nil, "")
	c.check(s, "GET", p, crmPath(unknown, "api/v5/orders"), serviceToken, nil, "")
	c.check(s, "DELETE", p, crmPath(pending.ID, "api/v5/orders"), serviceToken, nil, "")
	c.check(s, "PUT", p, crmPath(unreachable.ID, "api/v5/orders"), serviceToken, nil, "")
	_, err := s.app.Store.SetActivity(t.Context(), acc.ID, store.State{}, store.Lease{})
	require.NoError(t, err)
	c.check(s, "PATCH", p, crmPath(acc.ID, "api/v5/orders"), serviceToken, nil, "")
	c.check(s, "OPTIONS", p, crmPath(acc.ID, "api/v5/orders"), serviceToken, nil, "")
	c.check(s, "POST", a+"/accounts/{id}/deactivate", a+"/accounts/"+acc.ID+"/deactivate?local_only=true", adminToken, nil, "")

	// A key the health check found dead closes the shop's service API.
	sick := s.connect(t, crmtest.New(t), "key-sick")
	for _, h := range []store.KeyHealth{store.KeyRevoked, store.KeyScopesMissing} {
		_, _, err = s.app.Store.SetKeyHealth(t.Context(), sick.ID, sick.KeySeq, h, nil)
		require.NoError(t, err)
		c.check(s, "GET", v+"/credentials", creds(sick.ID), serviceToken, nil, "")
		c.check(s, "POST", v+"/token", tok(sick.ID), serviceToken, nil, "")
		c.check(s, "GET", p, crmPath(sick.ID, "api/v5/orders"), serviceToken, nil, "")
	}

	// 429: a replica whose shops get one call a second and no wait.
	slow := start(t, app.Options{ProxyMaxWait: time.Nanosecond}, 1)
	busy := slow.connect(t, slow.fake, "key-busy")
	c.check(slow, "GET", p, crmPath(busy.ID, "api/v5/orders"), serviceToken, nil, "")
	c.check(slow, "GET", p, crmPath(busy.ID, "api/v5/orders"), serviceToken, nil, "")

	for _, want := range []string{
		"GET /admin/api/accounts 200", "GET /admin/api/accounts 400", "GET /admin/api/accounts 401",
		"GET /admin/api/accounts/{id} 200", "GET /admin/api/accounts/{id} 404",
		"POST /admin/api/accounts/{id}/resync 200", "POST /admin/api/accounts/{id}/resync 409", "POST /admin/api/accounts/{id}/resync 503",
		"POST /admin/api/accounts/{id}/deactivate 200", "POST /admin/api/accounts/{id}/deactivate 404", "POST /admin/api/accounts/{id}/deactivate 409",
		"GET /admin/api/events 200", "GET /admin/api/events 400", "POST /admin/api/reseal 200",
		"GET /admin/api/openapi.yaml 200", "GET /admin/api/openapi.yaml 401",
		"GET " + v + "/credentials 200", "GET " + v + "/credentials 401", "GET " + v + "/credentials 404", "GET " + v + "/credentials 409",
		"GET /service/api/openapi.yaml 200", "GET /service/api/openapi.yaml 401",
		"POST " + v + "/token 200", "POST " + v + "/token 401", "POST " + v + "/token 404", "POST " + v + "/token 409",
		"GET " + p + " 200", "HEAD " + p + " 404", "POST " + p + " 201", "POST " + p + " 413 too_large", "GET " + p + " 401", "GET " + p + " 400", "GET " + p + " 404",
		"DELETE " + p + " 409", "PUT " + p + " 502", "PATCH " + p + " 409", "OPTIONS " + p + " 409", "GET " + p + " 429",
		// Every state a 409 names, where it can be met.
		"GET " + v + "/credentials 409 not_connected", "GET " + v + "/credentials 409 key_revoked", "GET " + v + "/credentials 409 scopes_missing",
		"POST " + v + "/token 409 not_connected", "POST " + v + "/token 409 key_revoked", "POST " + v + "/token 409 scopes_missing",
		"DELETE " + p + " 409 not_connected", "PATCH " + p + " 409 inactive",
		"GET " + p + " 409 key_revoked", "GET " + p + " 409 scopes_missing",
	} {
		assert.True(t, c.seen[want], "exercised: %s (seen: %v)", want, keys(c.seen))
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Every route of both APIs is in the document, and the document has no
// route the service does not serve.
func TestTheDocumentListsExactlyTheRoutes(t *testing.T) {
	doc := load(t)
	s := start(t, app.Options{}, 0)
	e, ok := s.app.Server.Handler.(*echo.Echo)
	require.True(t, ok)
	served := map[string]bool{}
	for _, r := range e.Routes() {
		if !strings.HasPrefix(r.Path, "/admin/api/") && !strings.HasPrefix(r.Path, "/service/api/") {
			continue
		}
		if strings.HasSuffix(r.Path, "/api/*") || r.Method == echo.RouteNotFound {
			continue // the catch-alls answering 404
		}
		if strings.HasSuffix(r.Path, "/crm/*") && !slices.Contains([]string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}, r.Method) {
			continue // echo's Any also adds CONNECT, TRACE and PROPFIND: the handler refuses them (405)
		}
		served[r.Method+" "+templateOf(r.Path)] = true
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	assert.Equal(t, keys(served), keys(documented))
}

// templateOf turns echo's route into the document's: ":id" is "{id}", the
// proxy's "*" is "{path}".
func templateOf(route string) string {
	parts := strings.Split(route, "/")
	for i, p := range parts {
		switch {
		case strings.HasPrefix(p, ":"):
			parts[i] = "{" + p[1:] + "}"
		case p == "*":
			parts[i] = "{path}"
		}
	}
	return strings.Join(parts, "/")
}
