package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/handlers"
	"github.com/modulehub/simpleconnect/settings"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/tokens"
)

// The account page in a real browser: Debian's chromium, driven through the
// DevTools protocol. Every test fails on a console error, an exception, a
// CSP violation, or any subresource (stylesheet, script, image, icon) that
// does not load. With BROWSER_ARTIFACTS=1, screenshots go to
// artifacts/browser/<lang>/ (git-ignored);
// with UPDATE_SCREENSHOTS=1, TestEveryPageStateInEveryLanguage also writes
// the README's, docs/screenshots/<lang>/<state>.png.

const (
	artifactsDir   = "../artifacts/browser"
	docsScreensDir = "../docs/screenshots"
)

// chromiumPath finds a Chromium: CHROMIUM_PATH, Debian's /usr/bin/chromium,
// or one on PATH. Without one the test skips, except under CI=true, where
// .ci/run installs it and a skip would hide a broken page.
func chromiumPath(t *testing.T) string {
	t.Helper()
	path, where := "", "/usr/bin/chromium or on PATH"
	if p := os.Getenv("CHROMIUM_PATH"); p != "" {
		where = "at CHROMIUM_PATH=" + p
		if _, err := os.Stat(p); err == nil {
			path = p
		}
	} else if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		path = "/usr/bin/chromium"
	} else {
		for _, name := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome"} {
			if p, err := exec.LookPath(name); err == nil {
				path = p
				break
			}
		}
	}
	switch {
	case path != "":
		return path
	case os.Getenv("CI") == "true":
		t.Fatalf("CI=true but no Chromium %s: the account page's browser test must run in CI (.ci/run installs Debian's chromium)", where)
	default:
		t.Skipf("no Chromium %s (apt-get install chromium, or set CHROMIUM_PATH): skipping the account page's browser test", where)
	}
	return ""
}

// problems collects what must not happen in any tab of one browser.
type problems struct {
	mu   sync.Mutex
	list []string
}

func (p *problems) add(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.list = append(p.list, s)
}

// take returns the problems so far and forgets them.
func (p *problems) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.list
	p.list = nil
	return out
}

// browser is one tab of a headless Chromium with a fresh profile, kept off
// every network but loopback, in Moscow's time zone (UTC+3, no DST), so
// that a time shown in UTC would be visibly wrong.
type browser struct {
	t        *testing.T
	ctx      context.Context
	problems *problems

	mu     sync.Mutex
	docs   map[network.RequestID]bool // requests for a page itself, not a subresource
	status int64                      // HTTP status of the last page loaded
}

func newBrowser(t *testing.T) *browser { return newBrowserIn(t, "en-US") }

// newBrowserIn is a browser whose Accept-Language is lang: what decides the
// language of a page reached from the CRM (a cross-site post carries no
// lang cookie).
func newBrowserIn(t *testing.T, lang string) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"), // hermetic: no name resolves
		chromedp.Flag("lang", lang),
		chromedp.Flag("accept-lang", lang),
		chromedp.WindowSize(1280, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute) // the browser lives as long as the test
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx, problems: &problems{}}
	b.watch()
	t.Cleanup(func() {
		assert.Empty(t, b.problems.take(), "no console errors, no CSP violations, no failed subresources")
	})
	return b
}

// newTab opens another tab of the same browser: the same cookies, as when
// an owner opens the module again from the CRM in a second tab.
func (b *browser) newTab() (*browser, context.CancelFunc) {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	tab := &browser{t: b.t, ctx: ctx, problems: b.problems}
	tab.watch()
	return tab, cancel
}

// watch starts the tab and records its problems and page statuses.
func (b *browser) watch() {
	b.t.Helper()
	b.docs = map[network.RequestID]bool{}
	require.NoError(b.t, chromedp.Listen(b.ctx, func(ev any) { // starts the tab; runtime, log and network are on
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			if ev.Type == network.ResourceTypeDocument {
				b.mu.Lock()
				b.docs[ev.RequestID] = true
				b.mu.Unlock()
			}
		case *network.EventResponseReceived:
			switch {
			case ev.Type == network.ResourceTypeDocument:
				b.mu.Lock()
				b.status = ev.Response.Status
				b.mu.Unlock()
			case ev.Response.Status >= 400: // a page may answer 4xx on purpose (a refused form); what it loads may not
				b.problems.add(fmt.Sprintf("%s %s answered %d", ev.Type, ev.Response.URL, ev.Response.Status))
			}
		case *network.EventLoadingFailed:
			if ev.Type != network.ResourceTypeDocument && !ev.Canceled { // canceled: the page was left before it loaded
				b.problems.add(fmt.Sprintf("%s failed to load: %s %s", ev.Type, ev.ErrorText, ev.BlockedReason))
			}
		case *cdplog.EventEntryAdded:
			b.mu.Lock()
			page := b.docs[ev.Entry.NetworkRequestID]
			b.mu.Unlock()
			// "Failed to load resource: … 422" about the page itself is
			// the status the test asserts; every other error counts.
			if ev.Entry.Level == cdplog.EntryLevelError && !(page && ev.Entry.Source == cdplog.EntrySourceNetwork) {
				b.problems.add(string(ev.Entry.Source) + ": " + ev.Entry.Text)
			}
		case *runtime.EventExceptionThrown:
			b.problems.add("exception: " + ev.ExceptionDetails.Text)
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				b.problems.add("console error")
			}
		}
	}))
	b.do("viewport and time zone", chromedp.EmulateViewport(1280, 900), chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Europe/Moscow"})
		return err
	}))
}

// pageStatus is the HTTP status of the page on screen.
func (b *browser) pageStatus() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.status
}

func (b *browser) do(step string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	require.NoError(b.t, chromedp.Do(b.ctx, steps...), "browser step: %s", step)
}

func run[T any](b *browser, step string, a chromedp.Action[T]) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, a)
	require.NoError(b.t, err, "browser step: %s", step)
	return v
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	return strings.TrimSpace(run(b, "text of "+sel, chromedp.Text(chromedp.CSS(sel), chromedp.NodeReady)))
}

func (b *browser) value(sel string) string {
	b.t.Helper()
	return run(b, "value of "+sel, chromedp.Value(chromedp.CSS(sel)))
}

func (b *browser) attr(sel, name string) string {
	b.t.Helper()
	return run(b, "attribute "+name+" of "+sel, chromedp.AttributeValue(chromedp.CSS(sel), name)).Value
}

func (b *browser) eval(expr string) any {
	b.t.Helper()
	return run(b, expr, chromedp.Evaluate[any](expr))
}

func (b *browser) exists(sel string) bool {
	b.t.Helper()
	return b.eval(fmt.Sprintf(`document.querySelector(%q) !== null`, sel)) == true
}

func (b *browser) html() string {
	b.t.Helper()
	return run(b, "page source", chromedp.OuterHTML(chromedp.CSS("html")))
}

func (b *browser) location() string {
	b.t.Helper()
	return run(b, "location", chromedp.Location())
}

// screenshot saves the whole page as artifacts/browser/<lang>/<name>.png
// (with BROWSER_ARTIFACTS=1), and in docs/screenshots/<lang>/ when docs is
// set and UPDATE_SCREENSHOTS=1. Otherwise it takes none: a full-page PNG
// per state and language is seconds of CPU that a run nobody looks at
// (CI's clean clone) would only throw away.
func (b *browser) screenshot(lang, name string, docs bool) {
	b.t.Helper()
	var dirs []string
	if os.Getenv("BROWSER_ARTIFACTS") == "1" {
		dirs = append(dirs, filepath.Join(artifactsDir, lang))
	}
	if docs && os.Getenv("UPDATE_SCREENSHOTS") == "1" {
		dirs = append(dirs, filepath.Join(docsScreensDir, lang))
	}
	if len(dirs) == 0 {
		return
	}
	png := run(b, "screenshot "+name, chromedp.FullScreenshot(100)) // 100: PNG
	for _, dir := range dirs {
		require.NoError(b.t, os.MkdirAll(dir, 0o755))
		require.NoError(b.t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
	}
}

// crmPage is what the CRM does after "Connect": a page whose form posts
// the clientId to accountUrl. A submit button stands in for the CRM's
// script, so the test page needs none.
func crmPage(accountURL, clientID string) string {
	page := fmt.Sprintf(`<!DOCTYPE html><html lang="en"><title>CRM marketplace</title>
<form method="post" action="%s"><input type="hidden" name="clientId" value="%s">
<button type="submit" id="open-module">Go to the module</button></form></html>`,
		html.EscapeString(accountURL), html.EscapeString(clientID))
	return "data:text/html;charset=utf-8," + url.PathEscape(page)
}

// openFromCRM opens the module as the CRM does, and waits for what
// follows (the account page, or an error page's heading).
func (b *browser) openFromCRM(accountURL, clientID string, waitFor string) {
	b.t.Helper()
	b.do("open the module from the CRM",
		chromedp.Navigate(crmPage(accountURL, clientID)),
		chromedp.Click(chromedp.ID("open-module"), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(waitFor)),
	)
	b.settled()
}

// settled waits until the page on screen has loaded completely: its
// deferred scripts (time.js) have run, and no node read next belongs to a
// document about to be replaced.
func (b *browser) settled() {
	b.t.Helper()
	var err error
	for range 50 {
		err = chromedp.Do(b.ctx, chromedp.Poll[chromedp.Void](`document.readyState === "complete"`, chromedp.WithPollingInterval(10*time.Millisecond)))
		// A navigation still under way (a redirect after a click) replaces
		// the document the poll ran in: poll the new one.
		if err == nil || !strings.Contains(err.Error(), "context") {
			break
		}
	}
	require.NoError(b.t, err, "browser step: the page has loaded")
}

// The watch itself: a stylesheet, image or icon that does not load, and a
// console error, are caught (the guard the other tests rely on: it used to
// let every 4xx through, so a broken stylesheet, logo or favicon passed).
func TestTheBrowserTestCatchesBrokenResourcesAndConsoleErrors(t *testing.T) {
	b := newBrowser(t)
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/broken" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, `<!DOCTYPE html><html lang="en"><title>broken</title>
<link rel="stylesheet" href="/missing.css"><img src="/missing.png" alt="">
<script>console.error("boom")</script><p id="done">x</p></html>`)
	}))
	defer site.Close()
	b.do("a page with broken resources",
		chromedp.Navigate(site.URL+"/broken"),
		chromedp.WaitVisible(chromedp.ID("done")),
	)
	require.EventuallyWithT(t, func(c *assert.CollectT) { // events may arrive after the page is visible
		b.problems.mu.Lock()
		got := strings.Join(b.problems.list, "\n")
		b.problems.mu.Unlock()
		assert.Contains(c, got, site.URL+"/missing.css", "the stylesheet (refused: a 404 page is no CSS)")
		assert.Contains(c, got, "Image "+site.URL+"/missing.png answered 404")
		assert.Contains(c, got, "Other "+site.URL+"/favicon.ico answered 404", "the icon a page without one still asks for")
		assert.Contains(c, got, "console error")
	}, 10*time.Second, 20*time.Millisecond)
	b.problems.take() // expected here
}

// Case 1 of issue 14, end to end: a new token refused only because of
// another field is kept; the language switch keeps what was typed; the
// retry with the token left empty saves the new token.
func TestAccountPageInABrowser(t *testing.T) {
	b := newBrowser(t) // before the harness: skips before anything starts
	const apiKey = "key-browser-0123456789"
	h := newHarness(t, nil, withSettingsFile(exampleSettings))
	acc := h.connected(apiKey)
	const token = "tok_browser_0123456789"
	h.remember(token)

	// The CRM sends the owner's browser to accountUrl with the clientId.
	b.openFromCRM(h.srv.URL+"/account", acc.ClientID.Reveal(), "#account-title")
	assert.Equal(t, h.srv.URL+"/account", b.location(), "303 to the page, no clientId in the address")
	assert.Equal(t, "en", b.attr("html", "lang"))
	assert.Equal(t, "Demo module", b.text("#account-title"))
	assert.Equal(t, "Active", b.text("#status"))
	assert.Contains(t, b.text("main"), h.fake.URL, "the shop's address")
	// Times in the owner's zone: the server wrote UTC, the script made it Moscow time.
	connected := acc.ConnectedAt.In(time.FixedZone("MSK", 3*3600))
	assert.Contains(t, b.text("dd time"), connected.Format("03:04"), "Moscow time")
	assert.Contains(t, b.text("dd time"), "GMT+3", "with the zone named")
	assert.Equal(t, acc.ConnectedAt.UTC().Format("2006-01-02 15:04 UTC"), b.attr("dd time", "title"), "UTC on hover")

	// A bad account number and a good new token: refused next to the
	// field, everything typed kept, the token kept on the server.
	b.do("fill the form with a bad account number",
		chromedp.SendKeys(chromedp.ID("setting-account_id"), "12ab"),
		chromedp.SendKeys(chromedp.ID("setting-api_token"), token),
		chromedp.SetValue(chromedp.ID("setting-environment"), "sandbox"),
		chromedp.Click(chromedp.ID("setting-sync_stock")), // untick
		chromedp.Click(chromedp.ID("settings-save")),
		chromedp.WaitVisible(chromedp.ID("setting-account_id-error")),
	)
	assert.Equal(t, int64(200), b.pageStatus(), "the refused form came back by Post/Redirect/Get")
	assert.Contains(t, b.text("#setting-account_id-error"), "Use digits only (3 to 12). For example: 4567")
	assert.Equal(t, "12ab", b.value("#setting-account_id"), "input kept")
	assert.Equal(t, "true", b.attr("#setting-account_id", "aria-invalid"))
	assert.Contains(t, strings.Fields(b.attr("#setting-account_id", "aria-describedby")), "setting-account_id-error")
	assert.Equal(t, "#setting-account_id", b.attr(".error-summary a", "href"), "the summary links to the field")
	assert.Equal(t, "sandbox", b.value("#setting-environment"), "select kept")
	assert.Equal(t, false, b.eval(`document.getElementById("setting-sync_stock").checked`), "unticked box kept")
	assert.Empty(t, b.value("#setting-api_token"), "a secret never comes back")
	assert.Contains(t, b.text("#setting-api_token-kept"), "The new value you typed is kept", "but the page says it was kept")
	assert.NotContains(t, b.html(), token)
	assert.Equal(t, "setting-account_id", b.eval(`document.activeElement.id`), "the first field to fix has the focus")
	saved, err := h.store.Get(t.Context(), acc.ID)
	require.NoError(t, err)
	assert.Empty(t, saved.Settings, "nothing saved from a refused form")

	// Switching language keeps what was typed.
	b.do("switch to Russian",
		chromedp.Click(chromedp.CSS(`.langs a[hreflang="ru"]`)),
		chromedp.WaitReady(chromedp.CSS(`html[lang="ru"]`)),
		chromedp.WaitVisible(chromedp.ID("settings-save")), // the form is parsed, not only the html element
	)
	assert.Equal(t, "12ab", b.value("#setting-account_id"))
	assert.Equal(t, "sandbox", b.value("#setting-environment"))
	assert.Equal(t, false, b.eval(`document.getElementById("setting-sync_stock").checked`))
	assert.Contains(t, b.text("#setting-account_id-error"), "Используйте только цифры")
	assert.Contains(t, b.text("#setting-api_token-kept"), "запомнено")
	b.do("switch back to English",
		chromedp.Click(chromedp.CSS(`.langs a[hreflang="en"]`)),
		chromedp.WaitReady(chromedp.CSS(`html[lang="en"]`)),
		chromedp.WaitVisible(chromedp.ID("settings-save")),
	)

	// The retry: only the account number fixed, the token left empty.
	b.do("correct the account number and save",
		chromedp.Clear(chromedp.ID("setting-account_id")),
		chromedp.SendKeys(chromedp.ID("setting-account_id"), "4567"),
		chromedp.Click(chromedp.ID("settings-save")),
		chromedp.WaitVisible(chromedp.CSS(".notice-saved")),
	)
	saved, err = h.store.Get(t.Context(), acc.ID)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"account_id": "4567", "api_token": token, "environment": "sandbox", "sync_stock": "false"},
		saved.Settings, "the new token saved, though not typed twice")
	assert.Equal(t, "Settings saved.", b.text(".notice-saved"))
	assert.Equal(t, "4567", b.value("#setting-account_id"))
	assert.Contains(t, b.text("#setting-api_token-saved"), "A value is saved")
	assert.NotContains(t, b.text(`label[for="setting-api_token"]`), "required", "saved: no longer required")
	assert.NotContains(t, b.html(), token, "the saved secret is never sent back")

	// Disconnect: a confirmation page, then the CRM edit with active:false.
	editsBefore := len(h.fake.Edits())
	b.do("ask to switch off",
		chromedp.Click(chromedp.ID("disconnect-start")),
		chromedp.WaitVisible(chromedp.ID("disconnect-confirm")),
	)
	assert.Len(t, h.fake.Edits(), editsBefore, "asking changes nothing")
	b.do("confirm",
		chromedp.Click(chromedp.ID("disconnect-yes")),
		chromedp.WaitVisible(chromedp.CSS(".notice-disconnected")),
	)
	assert.Equal(t, "Switched off", b.text("#status"))
	edits := h.fake.Edits()
	require.Len(t, edits, editsBefore+1, "one edit call")
	assert.Equal(t, false, edits[len(edits)-1].Module["active"], "the CRM was told active:false")
	assert.Equal(t, apiKey, edits[len(edits)-1].APIKey())
	off, err := h.store.Get(t.Context(), acc.ID)
	require.NoError(t, err)
	assert.Equal(t, store.StatusInactive, off.Status())
	assert.False(t, b.exists("#disconnect-start"), "no disconnect button any more")
}

// "Open <module name>" in a real browser: the form posts to /account/open,
// whose 303 leads to the module's app on another origin. Chromium checks
// that redirect against the page's form-action, so the page must name the
// app's origin there; the app receives the token in the fragment only.
func TestOpenTheModulesAppInABrowser(t *testing.T) {
	b := newBrowser(t)
	var (
		mu      sync.Mutex
		appSeen []string // every request line the app received
	)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		appSeen = append(appSeen, r.Method+" "+r.RequestURI)
		mu.Unlock()
		if r.URL.Path != "/embedded/ui" {
			http.NotFound(w, r)
			return
		}
		// An icon of its own, so the browser asks the app for no /favicon.ico.
		fmt.Fprint(w, `<!DOCTYPE html><html lang="en"><title>The module's app</title><link rel="icon" href="data:,">
<h1 id="app-title">The module's app</h1></html>`)
	}))
	defer app.Close()
	h := newHarness(t, nil, withTokenKey(tokens.NewSeed()), withAppURL(app.URL+"/embedded/ui?from=crm"))
	acc := h.connected("key-browser-open")

	b.openFromCRM(h.srv.URL+"/account", acc.ClientID.Reveal(), "#open-app")
	b.do("open the module's app", chromedp.Click(chromedp.ID("open-app"), chromedp.NodeVisible))
	// A form the CSP blocks never navigates: the bound turns that into a
	// failure naming the violation, not a wait for the test's own deadline.
	arrived, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	require.NoError(t, chromedp.Do(arrived, chromedp.WaitVisible(chromedp.ID("app-title"))),
		"the browser reaches the app; the browser reported: %q", b.problems.take())
	b.settled()
	loc := b.location()
	before, fragment, ok := strings.Cut(loc, "#")
	require.True(t, ok, "a fragment: %s", loc)
	assert.Equal(t, app.URL+"/embedded/ui?from=crm", before, "at the app, its query kept")
	require.True(t, strings.HasPrefix(fragment, "token="), "the token in the fragment: %s", fragment)
	token, err := url.QueryUnescape(strings.TrimPrefix(fragment, "token="))
	require.NoError(t, err)
	h.remember(token)
	claims, err := h.verifier().Verify(t.Context(), token)
	require.NoError(t, err, "a token the app can verify")
	assert.Equal(t, acc.ID, claims.AccountID())

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"GET /embedded/ui?from=crm"}, appSeen, "one request, and the token is not in it")
	for _, line := range appSeen {
		assert.NotContains(t, line, token)
	}
}

// Case 2 of issue 14, end to end: the module opened again from the CRM in
// a second tab makes the first tab's form stale. Saving it does not
// dead-end: the page comes back with what was typed (the token asked for
// again), a reload shows it again, and saving from there works. A stale
// sign-out gets the expired-form page and its link back.
func TestAnExpiredFormInABrowser(t *testing.T) {
	b := newBrowser(t)
	h := newHarness(t, nil, withSettingsFile(exampleSettings))
	acc := h.connected("key-browser-stale")
	const token = "tok_browser_stale_0123456789"
	h.remember(token)
	b.openFromCRM(h.srv.URL+"/account", acc.ClientID.Reveal(), "#settings-form")

	reopen := func() { // the owner opens the module again from the CRM, in another tab
		t.Helper()
		tab, closeTab := b.newTab()
		tab.openFromCRM(h.srv.URL+"/account", acc.ClientID.Reveal(), "#account-title")
		closeTab()
	}
	reopen()

	b.do("fill the old tab's form and save",
		chromedp.SendKeys(chromedp.ID("setting-account_id"), "777"),
		chromedp.SendKeys(chromedp.ID("setting-api_token"), token),
		chromedp.Click(chromedp.ID("setting-sync_stock")), // untick
		chromedp.Click(chromedp.ID("settings-save")),
		chromedp.WaitVisible(chromedp.ID("error-summary-title")),
	)
	check := func(when string) {
		t.Helper()
		assert.Equal(t, h.srv.URL+"/account#settings", b.location(), when)
		assert.Equal(t, int64(200), b.pageStatus(), when)
		assert.Equal(t, "This form had expired, so nothing was saved. What you typed is filled in below: check it and save again.",
			b.text("#error-summary-title"), when)
		assert.Equal(t, "777", b.value("#setting-account_id"), when)
		assert.Equal(t, false, b.eval(`document.getElementById("setting-sync_stock").checked`), when)
		assert.Contains(t, b.text("#setting-api_token-dropped"), "What you typed here was not kept: type it again.", when)
		assert.NotContains(t, b.html(), token, when)
		saved, err := h.store.Get(t.Context(), acc.ID)
		require.NoError(t, err)
		assert.Empty(t, saved.Settings, "nothing saved from the stale form (%s)", when)
	}
	check("after the stale save")
	b.do("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("error-summary-title")))
	check("after a reload")

	b.do("type the token again and save",
		chromedp.SendKeys(chromedp.ID("setting-api_token"), token),
		chromedp.Click(chromedp.ID("settings-save")),
		chromedp.WaitVisible(chromedp.CSS(".notice-saved")),
	)
	saved, err := h.store.Get(t.Context(), acc.ID)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"account_id": "777", "api_token": token, "environment": "production", "sync_stock": "false"}, saved.Settings)

	// A stale sign-out: the expired-form page, and its way back.
	reopen()
	b.do("sign out in the old tab",
		chromedp.Click(chromedp.CSS(".signout button")),
		chromedp.WaitVisible(chromedp.ID("message-title")),
	)
	assert.Equal(t, int64(403), b.pageStatus())
	assert.Equal(t, "This form has expired — Demo module", run(b, "title", chromedp.Title()))
	b.do("follow the next step",
		chromedp.Click(chromedp.ID("next-step")),
		chromedp.WaitVisible(chromedp.ID("account-title")),
	)
	assert.Equal(t, int64(200), b.pageStatus(), "back on the page, still signed in")
}

// Every state of every page, in English, Russian and Spanish: each loads
// without a problem in the owner's language, and is the screenshot the
// README shows (UPDATE_SCREENSHOTS=1 rewrites docs/screenshots/).
func TestEveryPageStateInEveryLanguage(t *testing.T) {
	chromiumPath(t) // skip before any subtest starts
	for _, lang := range []string{"en", "ru", "es"} {
		t.Run(lang, func(t *testing.T) { tour(t, lang) })
	}
}

// screenStates are the page states of the tour, in order: the README's
// screenshot table is built from them.
var screenStates = []string{
	"account", "account-mobile", "settings-error", "settings-error-mobile", "settings-saved", "settings-expired",
	"form-expired", "error", "disconnect-confirm", "disconnect-refused", "disconnected",
	"key-revoked", "scopes-missing", "not-found", "too-many-requests", "unknown-client", "signed-out", "session-ended",
}

func tour(t *testing.T, lang string) {
	b := newBrowserIn(t, lang)
	const apiKey = "key-tour-0123456789"
	// The CRM accepts the register, refuses the first switch-off, then accepts.
	h := newHarness(t, []crmtest.Option{crmtest.Edit(apiKey, crmtest.OK(), crmtest.Status(401), crmtest.OK())}, withSettingsFile(exampleSettings))
	acc := h.connected(apiKey)
	const token = "tok_tour_0123456789abc"
	h.remember(token)
	schema, err := settings.Load(exampleSettings)
	require.NoError(t, err)
	other := func(deps handlers.Deps) string { // another server over the same store; cookies are per host, so the session works there too
		deps.Config, deps.Log, deps.Accounts, deps.Sessions, deps.Store, deps.Settings = h.cfg, slog.New(slog.DiscardHandler), h.store, h.store, h.store, schema
		srv := httptest.NewServer(handlers.New(deps))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	limited := other(handlers.Deps{Connector: stubConnector{}, Failures: overBudget{}, Attempts: noAttemptsLeft{}})
	broken := other(handlers.Deps{Connector: stubConnector{err: errors.New("internal")}})

	shots := map[string]bool{}
	shot := func(state string, status int64) {
		t.Helper()
		b.settled()
		assert.Equal(t, lang, b.attr("html", "lang"), state)
		assert.Equal(t, status, b.pageStatus(), state)
		assert.NotEmpty(t, b.text("h1"), state)
		b.screenshot(lang, state, true)
		shots[state] = true
	}
	mobile := func(state string, status int64) {
		t.Helper()
		b.do("mobile", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
		shot(state, status)
		b.do("desktop", chromedp.EmulateViewport(1280, 900))
	}

	b.openFromCRM(h.srv.URL+"/account", acc.ClientID.Reveal(), "#account-title")
	b.do("pick the language",
		chromedp.Click(chromedp.CSS(`.langs a[hreflang="`+lang+`"]`)),
		chromedp.WaitReady(chromedp.CSS(`html[lang="`+lang+`"]`)),
	)
	shot("account", 200)
	mobile("account-mobile", 200)

	b.do("a refused form", chromedp.SendKeys(chromedp.ID("setting-account_id"), "12ab"),
		chromedp.SendKeys(chromedp.ID("setting-api_token"), token),
		chromedp.Click(chromedp.ID("settings-save")), chromedp.WaitVisible(chromedp.ID("setting-api_token-kept")))
	shot("settings-error", 200)
	mobile("settings-error-mobile", 200)

	b.do("the retry", chromedp.Clear(chromedp.ID("setting-account_id")), chromedp.SendKeys(chromedp.ID("setting-account_id"), "4567"),
		chromedp.Click(chromedp.ID("settings-save")), chromedp.WaitVisible(chromedp.CSS(".notice-saved")))
	shot("settings-saved", 200)

	reopen := func() {
		tab, closeTab := b.newTab()
		tab.openFromCRM(h.srv.URL+"/account", acc.ClientID.Reveal(), "#account-title")
		closeTab()
	}
	reopen()
	b.do("a stale form", chromedp.Clear(chromedp.ID("setting-account_id")), chromedp.SendKeys(chromedp.ID("setting-account_id"), "777"),
		chromedp.SendKeys(chromedp.ID("setting-api_token"), token),
		chromedp.Click(chromedp.ID("settings-save")), chromedp.WaitVisible(chromedp.ID("setting-api_token-dropped")))
	shot("settings-expired", 200)
	b.do("discard it", chromedp.Click(chromedp.ID("settings-discard")), chromedp.WaitVisible(chromedp.ID("setting-api_token-saved")))

	reopen()
	b.do("a stale sign-out", chromedp.Click(chromedp.CSS(".signout button")), chromedp.WaitVisible(chromedp.ID("next-step")))
	shot("form-expired", 403)

	b.do("a failure on our side", chromedp.Navigate(broken+"/account/disconnect"),
		chromedp.Click(chromedp.ID("disconnect-yes"), chromedp.NodeVisible), chromedp.WaitVisible(chromedp.ID("next-step")))
	shot("error", 500)

	b.do("back, and ask to switch off", chromedp.Navigate(h.srv.URL+"/account"),
		chromedp.Click(chromedp.ID("disconnect-start"), chromedp.NodeVisible), chromedp.WaitVisible(chromedp.ID("disconnect-confirm")))
	shot("disconnect-confirm", 200)
	b.do("the CRM refuses", chromedp.Click(chromedp.ID("disconnect-yes")), chromedp.WaitVisible(chromedp.ID("alert")))
	shot("disconnect-refused", 502)
	b.do("switch off again", chromedp.Click(chromedp.ID("disconnect-start")), chromedp.WaitVisible(chromedp.ID("disconnect-confirm")),
		chromedp.Click(chromedp.ID("disconnect-yes")), chromedp.WaitVisible(chromedp.CSS(".notice-disconnected")))
	shot("disconnected", 200)

	// The key health check found the key revoked, then a scope missing.
	keyHealth := func(health store.KeyHealth, missing ...string) {
		t.Helper()
		cur, err := h.store.Get(t.Context(), acc.ID)
		require.NoError(t, err)
		_, _, err = h.store.SetKeyHealth(t.Context(), acc.ID, cur.KeySeq, health, missing)
		require.NoError(t, err)
	}
	keyHealth(store.KeyRevoked)
	b.do("the key was revoked", chromedp.Navigate(h.srv.URL+"/account"), chromedp.WaitVisible(chromedp.CSS(".status-key_revoked")))
	shot("key-revoked", 200)
	keyHealth(store.KeyScopesMissing, "order_write")
	b.do("a scope is missing", chromedp.Navigate(h.srv.URL+"/account"), chromedp.WaitVisible(chromedp.ID("missing-scopes")))
	assert.Contains(t, b.text("#missing-scopes"), "order_write", "the page names what the key lost")
	shot("scopes-missing", 200)

	b.do("no such page", chromedp.Navigate(h.srv.URL+"/nowhere"), chromedp.WaitVisible(chromedp.ID("next-step")))
	shot("not-found", 404)
	// A known clientId is never refused by a limit: the page shows for
	// another one from an address past its failure budget.
	b.openFromCRM(limited+"/account", "never-issued-11111111111111111111111111111", "#next-step")
	shot("too-many-requests", 429)
	b.openFromCRM(h.srv.URL+"/account", "never-issued-00000000000000000000000000000", "#next-step")
	shot("unknown-client", 404)

	b.do("sign out", chromedp.Navigate(h.srv.URL+"/account"), chromedp.Click(chromedp.CSS(".signout button"), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.ID("message-title")))
	shot("signed-out", 200)
	b.do("the page without a session", chromedp.Navigate(h.srv.URL+"/account"), chromedp.WaitVisible(chromedp.ID("expired-title")))
	shot("session-ended", 401)

	for _, state := range screenStates {
		assert.True(t, shots[state], "state %s was shot", state)
	}
	assert.Len(t, shots, len(screenStates), "and every shot is a listed state")
}

// The README shows every state the tour shoots, in every language, and
// each file is there (no Chromium needed).
func TestTheREADMELinksEveryScreenshot(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	for _, lang := range []string{"en", "ru", "es"} {
		for _, state := range screenStates {
			path := "docs/screenshots/" + lang + "/" + state + ".png"
			assert.Contains(t, string(readme), "("+path+")", "README links %s", path)
			assert.FileExists(t, filepath.Join("..", path))
		}
	}
}
