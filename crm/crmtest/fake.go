package crmtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Reply is one scripted answer of the fake CRM.
type Reply struct {
	Status int
	Header map[string]string
	Body   string
	// Hang makes the fake hold the request until the caller gives up (or
	// Release is called), to test timeouts without sleeping.
	Hang bool
	// Gate, when set, holds the request until it is closed, then answers
	// normally: a slow CRM whose pace the test decides.
	Gate <-chan struct{}
}

// After answers r once gate is closed.
func After(gate <-chan struct{}, r Reply) Reply {
	r.Gate = gate
	return r
}

// OK is the CRM's success reply to an edit, with info as an object.
func OK() Reply {
	return jsonReply(http.StatusOK, `{"success":true,"info":{"billingInfo":{"price":0,"currency":{"code":"RUB"}}}}`)
}

// OKEmptyInfo is a success whose info is the empty array some accounts send.
func OKEmptyInfo() Reply { return jsonReply(http.StatusOK, `{"success":true,"info":[]}`) }

// Status is the CRM's usual reply for an error status.
func Status(code int) Reply {
	switch code {
	case 400:
		return jsonReply(code, `{"success":false,"errorMsg":"Errors in the entity format","errors":{"code":"This value should not be blank."}}`)
	case 401:
		return jsonReply(code, `{"success":false,"errorMsg":"\"apiKey\" is missing."}`)
	case 402:
		return jsonReply(code, `{"success":false,"errorMsg":"Insufficient funds to use the module"}`)
	case 403:
		return jsonReply(code, `{"success":false,"errorMsg":"Wrong \"apiKey\" value."}`)
	case 404:
		return jsonReply(code, `{"success":false,"errorMsg":"API method not found"}`)
	case 429:
		return jsonReply(code, `{"success":false,"errorMsg":"Rate limit exceeded"}`)
	case 503:
		return jsonReply(code, `{"success":false,"errorMsg":"Service temporarily unavailable"}`)
	default:
		return jsonReply(code, `{"success":false,"errorMsg":"Internal server error"}`)
	}
}

// HTML is what an address that is not a CRM account answers.
func HTML() Reply {
	return Reply{Status: http.StatusNotFound, Header: map[string]string{"Content-Type": "text/html; charset=UTF-8"},
		Body: "<!DOCTYPE html>\n<html><head><title>Account not found</title></head><body>Account not found</body></html>"}
}

// Hang holds the request until the caller's deadline.
func Hang() Reply { return Reply{Hang: true} }

func jsonReply(status int, body string) Reply {
	return Reply{Status: status, Header: map[string]string{"Content-Type": "application/json; charset=UTF-8"}, Body: body}
}

// Call is one request the fake received.
type Call struct {
	Method string
	Path   string
	// RawPath is the path as it came, escaped; RawQuery the query.
	RawPath  string
	RawQuery string
	Header   http.Header
	Form     url.Values
	Body     []byte
	// At is when the fake received the call (rate checks).
	At time.Time
	// Module is the decoded integrationModule of an edit call.
	Module map[string]any
}

// APIKey is the X-API-KEY the call carried.
func (c Call) APIKey() string { return c.Header.Get("X-API-KEY") }

// Fake is a scripted CRM. Create it with New (tests) or Start.
type Fake struct {
	URL string

	srv     *httptest.Server
	mu      sync.Mutex
	calls   []Call
	edits   map[string][]Reply // per API key; the last reply repeats
	anyEdit []Reply
	scopes  map[string][]string
	creds   map[string]Reply
	modules map[string]map[string]any // last accepted module per API key
	release chan struct{}
	onCall  func(Call)
	conns   int
	// api are scripted replies per "METHOD /path" (api.go); orders are
	// the orders each API key created.
	api    map[string][]Reply
	orders map[string][]map[string]any
}

// Option configures a Fake.
type Option func(*Fake)

// Edit scripts the replies to edit calls made with apiKey, in order; the last
// one repeats. An empty apiKey scripts every key without a script of its own.
func Edit(apiKey string, replies ...Reply) Option {
	return func(f *Fake) {
		if apiKey == "" {
			f.anyEdit = replies
			return
		}
		f.edits[apiKey] = replies
	}
}

// Scopes sets the scopes /api/credentials reports for apiKey (default: the
// two integration scopes). A nil list makes the key unknown (403).
func Scopes(apiKey string, scopes ...string) Option {
	return func(f *Fake) { f.scopes[apiKey] = scopes }
}

// Credentials makes /api/credentials answer apiKey with reply, verbatim
// (e.g. a recorded reply of an older CRM without "scopes").
func Credentials(apiKey string, reply Reply) Option {
	return func(f *Fake) { f.creds[apiKey] = reply }
}

// OnCall is called for every received request, after it is recorded.
func OnCall(fn func(Call)) Option { return func(f *Fake) { f.onCall = fn } }

// New starts a fake CRM on loopback for the life of the test.
func New(t testing.TB, opts ...Option) *Fake {
	t.Helper()
	f, err := Start("127.0.0.1:0", opts...)
	if err != nil {
		t.Fatalf("crmtest: %v", err)
	}
	t.Cleanup(f.Close)
	return f
}

// Start starts a fake CRM listening on addr.
func Start(addr string, opts ...Option) (*Fake, error) {
	f := &Fake{
		edits:   map[string][]Reply{},
		scopes:  map[string][]string{},
		creds:   map[string]Reply{},
		modules: map[string]map[string]any{},
		release: make(chan struct{}),
		api:     map[string][]Reply{},
		orders:  map[string][]map[string]any{},
	}
	for _, o := range opts {
		o(f)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
		}
	}
	f.srv.Listener.Close()
	f.srv.Listener = ln
	f.srv.Start()
	f.URL = f.srv.URL
	return f, nil
}

// Close releases hung requests and stops the server.
func (f *Fake) Close() {
	f.Release()
	f.srv.Close()
}

// Release lets every hung request finish.
func (f *Fake) Release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.release:
	default:
		close(f.release)
	}
}

// Calls returns a copy of the calls received so far.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// Connections counts the TCP connections accepted so far, requests or not:
// a guard test asserts zero.
func (f *Fake) Connections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}

// Edits returns only the edit calls.
func (f *Fake) Edits() []Call {
	var out []Call
	for _, c := range f.Calls() {
		if strings.HasSuffix(c.Path, "/edit") {
			out = append(out, c)
		}
	}
	return out
}

// Module returns the module last registered with apiKey, or nil.
func (f *Fake) Module(apiKey string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.modules[apiKey]
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	r.Body = io.NopCloser(bytes.NewReader(body))
	_ = r.ParseForm()
	call := Call{
		Method: r.Method, Path: r.URL.Path, RawPath: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery,
		Header: r.Header.Clone(), Form: r.PostForm, Body: body, At: time.Now(),
	}
	if raw := r.PostForm.Get("integrationModule"); raw != "" {
		_ = json.Unmarshal([]byte(raw), &call.Module)
	}
	f.mu.Lock()
	f.calls = append(f.calls, call)
	onCall := f.onCall
	f.mu.Unlock()
	if onCall != nil {
		onCall(call)
	}

	var reply Reply
	scripted, isScripted := f.scripted(call)
	switch {
	case isScripted:
		reply = scripted
	case r.Method == http.MethodGet && r.URL.Path == "/api/v5/orders":
		reply = f.listOrders(call)
	case r.Method == http.MethodPost && r.URL.Path == "/api/v5/orders/create":
		reply = f.createOrder(call)
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/api/v5/integration-modules/") && strings.HasSuffix(r.URL.Path, "/edit"):
		reply = f.edit(call)
	case r.Method == http.MethodGet && r.URL.Path == "/api/credentials":
		reply = f.credentials(call)
	case strings.HasPrefix(r.URL.Path, "/api/"):
		reply = Status(http.StatusNotFound)
	default:
		reply = HTML()
	}
	if reply.Hang {
		select {
		case <-r.Context().Done():
		case <-f.release:
		}
		return
	}
	if reply.Gate != nil {
		select {
		case <-reply.Gate:
		case <-r.Context().Done():
			return
		}
	}
	for k, v := range reply.Header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(reply.Status)
	_, _ = io.WriteString(w, reply.Body)
}

// edit validates an edit call as the CRM does, then answers from the script.
func (f *Fake) edit(c Call) Reply {
	key := c.APIKey()
	if key == "" {
		return Status(http.StatusUnauthorized)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	script, ok := f.edits[key]
	if !ok {
		script = f.anyEdit
	}
	var reply Reply
	switch {
	case len(script) > 0:
		reply = script[0]
		if len(script) > 1 {
			if ok {
				f.edits[key] = script[1:]
			} else {
				f.anyEdit = script[1:]
			}
		}
	case c.Module == nil:
		reply = jsonReply(400, `{"success":false,"errorMsg":"Parameter 'integrationModule' is missing"}`)
	case fmt.Sprint(c.Module["code"]) != pathCode(c.Path):
		reply = jsonReply(400, `{"success":false,"errorMsg":"Errors in the entity format","errors":["code: Code in the URL and in the body differ."]}`)
	default:
		reply = OK()
	}
	if reply.Status >= 200 && reply.Status < 300 && c.Module != nil {
		f.modules[key] = c.Module
	}
	return reply
}

func (f *Fake) credentials(c Call) Reply {
	key := c.APIKey()
	if key == "" {
		return Status(http.StatusUnauthorized)
	}
	f.mu.Lock()
	scopes, ok := f.scopes[key]
	scripted, isScripted := f.creds[key]
	f.mu.Unlock()
	if isScripted {
		return scripted
	}
	if !ok {
		scopes = []string{"integration_read", "integration_write"}
	}
	if scopes == nil {
		return Status(http.StatusForbidden)
	}
	body, _ := json.Marshal(map[string]any{
		"success":        true,
		"credentials":    []string{"/api/integration-modules/{code}", "/api/integration-modules/{code}/edit", "/api/credentials"},
		"siteAccess":     "access_full",
		"sitesAvailable": []string{"main-site"},
		"scopes":         scopes,
	})
	return jsonReply(http.StatusOK, string(body))
}

func pathCode(p string) string {
	p = strings.TrimPrefix(p, "/api/v5/integration-modules/")
	p = strings.TrimSuffix(p, "/edit")
	code, _ := url.PathUnescape(p)
	return code
}
