package main

import (
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The fake CRM runs in a child process of its own (this program with
// LOADTEST_CHILD=fake-crm), so its work and memory count for neither the
// service nor the peer. Every shop has its own address, a port of its own
// on 127.0.0.1 (the loopback address the service's insecure mode allows):
// a register is a new connection to a new host, as in production, and the
// shop index of the service's store is one shop per address. Listeners are
// opened on demand through the control address.
//
// It answers GET /api/credentials with the two integration scopes and
// POST /api/v5/integration-modules/{code}/edit with success (info as an
// object, or [] with -crm-info-array), as crm/crmtest does, and times its
// own handling of each call (from the handler's start, the request's
// headers read, to its reply written) by API key: that is the "CRM's own
// time" a register's latency is reduced by.

type fakeCRM struct {
	infoArray bool
	// ordersDelay is the CRM's own time for GET /api/v5/orders (the proxy
	// phase's -proxy-crm-time): 0 answers at once.
	ordersDelay time.Duration

	mu        sync.Mutex
	shops     []string                       // 127.0.0.1:port of shop i
	times     map[string]*crmTime            // by API key, drained by /times
	clientIDs map[string]map[string]struct{} // by host|module code: every clientId an edit carried
	srv       *http.Server
}

type crmTime struct {
	Nanos int64 `json:"ns"`
	Calls int   `json:"calls"`
}

// serveFakeCRM is the child: the control API on 127.0.0.1, its address
// written as "listening ADDR" to out, until stdin closes (the parent ended)
// or maxLife passes.
func serveFakeCRM(stdin io.Reader, out io.Writer, infoArray bool, ordersDelay time.Duration, maxLife time.Duration) error {
	f := &fakeCRM{infoArray: infoArray, ordersDelay: ordersDelay, times: map[string]*crmTime{}, clientIDs: map[string]map[string]struct{}{}}
	f.srv = &http.Server{Handler: http.HandlerFunc(f.serveCRM), ErrorLog: log.New(io.Discard, "", 0), ReadHeaderTimeout: 10 * time.Second}
	defer f.srv.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /shops", f.handleShops)
	mux.HandleFunc("GET /times", f.handleTimes)
	mux.HandleFunc("GET /clientids", f.handleClientIDs)
	return serveChild(&http.Server{Handler: mux, ErrorLog: log.New(io.Discard, "", 0), ReadHeaderTimeout: 10 * time.Second}, stdin, out, maxLife)
}

// handleShops makes sure shops 0..n-1 have a listener and returns their
// host:port, in order.
func (f *fakeCRM) handleShops(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil || n < 0 || n > 1_000_000 {
		http.Error(w, "bad n", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.shops); i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		f.shops = append(f.shops, ln.Addr().String())
		go func() { _ = f.srv.Serve(ln) }()
	}
	_ = json.NewEncoder(w).Encode(f.shops[:n])
}

// handleTimes returns the CRM's own time by API key since the last call,
// and forgets it.
func (f *fakeCRM) handleTimes(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	t := f.times
	f.times = map[string]*crmTime{}
	f.mu.Unlock()
	_ = json.NewEncoder(w).Encode(t)
}

// handleClientIDs lists the clientIds that edits for one shop and module
// carried.
func (f *fakeCRM) handleClientIDs(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	var ids []string
	for id := range f.clientIDs[r.URL.Query().Get("host")+"|"+r.URL.Query().Get("code")] {
		ids = append(ids, id)
	}
	f.mu.Unlock()
	_ = json.NewEncoder(w).Encode(ids)
}

var (
	credentialsReply = []byte(`{"success":true,"credentials":["/api/integration-modules/{code}","/api/integration-modules/{code}/edit","/api/credentials"],"siteAccess":"access_full","sitesAvailable":["main-site"],"scopes":["integration_read","integration_write"]}`)
	editReplyObject  = []byte(`{"success":true,"info":{"billingInfo":{"price":0,"currency":{"code":"RUB"}}}}`)
	editReplyArray   = []byte(`{"success":true,"info":[]}`)
	// ordersReply is a page of orders as the CRM answers GET /api/v5/orders
	// (the proxy phase's call), one order, about the size of a short page.
	ordersReply = []byte(`{"success":true,"pagination":{"limit":20,"totalCount":1,"currentPage":1,"totalPageCount":1},"orders":[{"id":1,"number":"1A","externalId":"loadtest-1","status":"new","site":"main-site","totalSumm":100,"createdAt":"2026-11-27 12:00:00","items":[{"id":1,"quantity":1,"initialPrice":100}]}]}`)
)

func (f *fakeCRM) serveCRM(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	key := r.Header.Get("X-API-KEY")
	status, body := f.answer(r, key)
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	d := time.Since(start)
	f.mu.Lock()
	t := f.times[key]
	if t == nil {
		t = &crmTime{}
		f.times[key] = t
	}
	t.Nanos += int64(d)
	t.Calls++
	f.mu.Unlock()
}

func (f *fakeCRM) answer(r *http.Request, key string) (int, []byte) {
	if key == "" {
		return http.StatusUnauthorized, []byte(`{"success":false,"errorMsg":"\"apiKey\" is missing."}`)
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/credentials":
		return http.StatusOK, credentialsReply
	case r.Method == http.MethodGet && r.URL.Path == "/api/v5/orders":
		if f.ordersDelay > 0 {
			t := time.NewTimer(f.ordersDelay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
			}
		}
		return http.StatusOK, ordersReply
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/api/v5/integration-modules/") && strings.HasSuffix(r.URL.Path, "/edit"):
		code, _ := url.PathUnescape(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/api/v5/integration-modules/"), "/edit"))
		var m struct {
			Code     string `json:"code"`
			ClientID string `json:"clientId"`
		}
		if err := json.Unmarshal([]byte(r.PostFormValue("integrationModule")), &m); err != nil || m.Code != code || m.ClientID == "" {
			return http.StatusBadRequest, []byte(`{"success":false,"errorMsg":"Errors in the entity format"}`)
		}
		f.mu.Lock()
		set := f.clientIDs[r.Host+"|"+code]
		if set == nil {
			set = map[string]struct{}{}
			f.clientIDs[r.Host+"|"+code] = set
		}
		set[m.ClientID] = struct{}{}
		f.mu.Unlock()
		if f.infoArray {
			return http.StatusOK, editReplyArray
		}
		return http.StatusOK, editReplyObject
	default:
		return http.StatusNotFound, []byte(`{"success":false,"errorMsg":"API method not found"}`)
	}
}
