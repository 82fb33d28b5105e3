// Command crmsim plays the CRM marketplace's side of a simple connection
// against a running service, with no real CRM: it serves the CRM's API
// (module edit, credentials) on loopback, then fetches the service's config,
// signs and sends a register the way the CRM does, and opens the account
// page with the clientId, printing each step.
//
//	go run ./cmd/crmsim -service http://127.0.0.1:8080 -secret dev
//
// With -serve it only serves the fake CRM API until interrupted, for trying
// the flow by hand with curl.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/verify"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "crmsim:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("crmsim", flag.ContinueOnError)
	service := fs.String("service", "http://127.0.0.1:8080", "base URL of the running service")
	secret := fs.String("secret", "dev", "the module secret (first of MODULE_SECRETS)")
	apiKey := fs.String("api-key", "sim-api-key-0001", "the API key the simulated shop hands over")
	listen := fs.String("listen", "127.0.0.1:0", "loopback address for the fake CRM API")
	serve := fs.Bool("serve", false, "only serve the fake CRM API until interrupted")
	if err := fs.Parse(args); err != nil {
		return err
	}
	seen := &rate{}
	fake, err := crmtest.Start(*listen, crmtest.OnCall(func(c crmtest.Call) {
		// The key it saw (masked) and the rate it saw: a module's services
		// call orders through the service's proxy, which must keep to the
		// CRM's ten a second.
		fmt.Fprintf(out, "    [fake CRM] %s %s (X-API-KEY %s, %d in the last second)\n", c.Method, c.Path, mask(c.APIKey()), seen.add(c.At))
		if *serve && c.Module != nil {
			// By hand, the next step needs the clientId: this fake CRM and
			// its keys exist only on this machine, so it is shown whole.
			fmt.Fprintf(out, "    [fake CRM] module %v registered, clientId=%v accountUrl=%v\n", c.Module["code"], c.Module["clientId"], c.Module["accountUrl"])
		}
	}))
	if err != nil {
		return fmt.Errorf("start fake CRM: %w", err)
	}
	defer fake.Close()
	fmt.Fprintf(out, "fake CRM API listening at %s\n", fake.URL)
	fmt.Fprintln(out, "(the service accepts it when started with CRM_ALLOW_INSECURE=true CRM_ALLOWED_HOSTS=127.0.0.1)")

	if *serve {
		fmt.Fprintf(out, "serving until interrupted; use systemUrl %s in a register call\n", fake.URL)
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		<-ctx.Done()
		return nil
	}
	return simulate(out, strings.TrimSuffix(*service, "/"), redact.Secret(*secret), redact.Secret(*apiKey), fake)
}

func simulate(out io.Writer, service string, secret, apiKey redact.Secret, fake *crmtest.Fake) error {
	jar, _ := cookiejar.New(nil)
	client := &http.Client{
		Timeout: 30 * time.Second, Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	fmt.Fprintf(out, "\n1. The owner opens the module card: GET %s/config\n", service)
	var cfg struct {
		Success     bool     `json:"success"`
		Scopes      []string `json:"scopes"`
		RegisterURL string   `json:"registerUrl"`
	}
	if err := getJSON(client, service+"/config", &cfg); err != nil {
		return err
	}
	fmt.Fprintf(out, "   success=%v scopes=%v registerUrl=%s\n", cfg.Success, cfg.Scopes, cfg.RegisterURL)
	if !cfg.Success || cfg.RegisterURL == "" {
		return errors.New("config did not answer success with a registerUrl")
	}
	registerURL := sameHost(service, cfg.RegisterURL)

	token := verify.Sign(secret, apiKey)
	fmt.Fprintf(out, "\n2. The owner clicks Connect: token = hex(HMAC-SHA256(secret, apiKey)) = %s…\n", token[:12])
	body, _ := json.Marshal(map[string]string{"apiKey": apiKey.Reveal(), "systemUrl": fake.URL, "token": token})
	fmt.Fprintf(out, "   POST %s  register={\"apiKey\":\"%s\",\"systemUrl\":\"%s\",\"token\":\"%s…\"}\n", registerURL, mask(apiKey.Reveal()), fake.URL, token[:12])
	resp, err := client.PostForm(registerURL, url.Values{"register": {string(body)}})
	if err != nil {
		return err
	}
	var reg struct {
		Success    bool   `json:"success"`
		AccountURL string `json:"accountUrl"`
		ErrorMsg   string `json:"errorMsg"`
	}
	err = decode(resp, &reg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "   HTTP %d success=%v accountUrl=%s errorMsg=%q\n", resp.StatusCode, reg.Success, reg.AccountURL, reg.ErrorMsg)
	if !reg.Success {
		return fmt.Errorf("register failed: %s", reg.ErrorMsg)
	}

	module := fake.Module(apiKey.Reveal())
	clientID, _ := module["clientId"].(string)
	fmt.Fprintf(out, "\n3. The CRM now lists the module: code=%v active=%v baseUrl=%v accountUrl=%v clientId=%s\n",
		module["code"], module["active"], module["baseUrl"], module["accountUrl"], mask(clientID))
	if clientID == "" {
		return errors.New("the service did not register a clientId in the CRM")
	}

	accountURL := sameHost(service, reg.AccountURL)
	fmt.Fprintf(out, "\n4. The CRM sends the owner's browser: POST %s clientId=%s\n", accountURL, mask(clientID))
	resp, err = client.PostForm(accountURL, url.Values{"clientId": {clientID}})
	if err != nil {
		return err
	}
	resp.Body.Close()
	fmt.Fprintf(out, "   HTTP %d Location=%s session cookie set=%v\n", resp.StatusCode, resp.Header.Get("Location"), len(resp.Cookies()) > 0)
	if resp.StatusCode != http.StatusSeeOther {
		return fmt.Errorf("account login answered %d, want 303", resp.StatusCode)
	}
	page, err := url.Parse(accountURL)
	if err != nil {
		return err
	}
	loc, err := page.Parse(resp.Header.Get("Location"))
	if err != nil {
		return err
	}
	resp, err = client.Get(loc.String())
	if err != nil {
		return err
	}
	html, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	fmt.Fprintf(out, "   GET %s -> HTTP %d, page shows the shop address: %v, state: %s\n",
		loc, resp.StatusCode, strings.Contains(string(html), fake.URL), state(string(html)))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("account page answered %d", resp.StatusCode)
	}

	fmt.Fprintf(out, "\n5. The owner switches the module off in the CRM: POST %s/activity\n", service)
	resp, err = client.PostForm(service+"/activity", url.Values{
		"clientId": {clientID}, "systemUrl": {fake.URL}, "activity": {`{"active":false,"freeze":false}`},
	})
	if err != nil {
		return err
	}
	var act struct {
		Success  bool   `json:"success"`
		ErrorMsg string `json:"errorMsg"`
	}
	if err := decode(resp, &act); err != nil {
		return err
	}
	fmt.Fprintf(out, "   HTTP %d success=%v %s\n", resp.StatusCode, act.Success, act.ErrorMsg)
	if !act.Success {
		return fmt.Errorf("activity failed: %s", act.ErrorMsg)
	}
	fmt.Fprintln(out, "\nThe whole simple connection worked.")
	return nil
}

// sameHost keeps the service's scheme and host for a URL the service
// built from PUBLIC_URL, so the simulator also works when PUBLIC_URL names
// a public host that is not reachable from here.
func sameHost(service, u string) string {
	s, err1 := url.Parse(service)
	p, err2 := url.Parse(u)
	if err1 != nil || err2 != nil {
		return u
	}
	p.Scheme, p.Host = s.Scheme, s.Host
	return p.String()
}

var stateRe = regexp.MustCompile(`class="status status-(\w+)"`)

func state(html string) string {
	if m := stateRe.FindStringSubmatch(html); m != nil {
		return m[1]
	}
	return "unknown"
}

func getJSON(c *http.Client, u string, v any) error {
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	return decode(resp, v)
}

func decode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s answered HTTP %d with a non-JSON body", resp.Request.URL.Path, resp.StatusCode)
	}
	return nil
}

// mask shows the first characters of a credential, enough to recognise it.
func mask(s string) string {
	if len(s) <= 6 {
		return "***"
	}
	return s[:4] + "…"
}

// rate counts the calls of the last second.
type rate struct {
	mu sync.Mutex
	at []time.Time
}

func (r *rate) add(t time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	keep := r.at[:0]
	for _, x := range r.at {
		if t.Sub(x) < time.Second {
			keep = append(keep, x)
		}
	}
	r.at = append(keep, t)
	return len(r.at)
}
