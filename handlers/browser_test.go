package handlers_test

import (
	"context"
	"fmt"
	"html"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/store"
)

// The account page in a real browser: Debian's chromium, driven through the
// DevTools protocol. Screenshots go to artifacts/browser/ (git-ignored);
// with UPDATE_SCREENSHOTS=1 the README's ones in docs/screenshots/ as well.

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

// browser is one headless Chromium with a fresh profile, kept off every
// network but loopback.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []string // console errors and CSP violations
}

func newBrowser(t *testing.T) *browser {
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
		chromedp.Flag("lang", "en-US"),
		chromedp.WindowSize(1280, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute) // the browser lives as long as the test
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })

	b := &browser{t: t, ctx: ctx}
	require.NoError(t, chromedp.Listen(ctx, func(ev any) { // starts the browser; runtime and log are on
		switch ev := ev.(type) {
		case *cdplog.EventEntryAdded:
			// A 4xx page (a refused form is a 422) is logged as a failed
			// load; anything else at error level is a problem.
			if ev.Entry.Level == cdplog.EntryLevelError && !strings.Contains(ev.Entry.Text, "the server responded with a status of 4") {
				b.problem(string(ev.Entry.Source) + ": " + ev.Entry.Text)
			}
		case *runtime.EventExceptionThrown:
			b.problem("exception: " + ev.ExceptionDetails.Text)
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				b.problem("console error")
			}
		}
	}))
	b.do("viewport", chromedp.EmulateViewport(1280, 900))
	return b
}

func (b *browser) problem(p string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems = append(b.problems, p)
}

func (b *browser) Problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.problems...)
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

func (b *browser) html() string {
	b.t.Helper()
	return run(b, "page source", chromedp.OuterHTML(chromedp.CSS("html")))
}

// screenshot saves the whole page as artifacts/browser/<name>.png, and as
// docs/screenshots/<name>.png too when docs is set and UPDATE_SCREENSHOTS=1.
func (b *browser) screenshot(name string, docs bool) {
	b.t.Helper()
	png := run(b, "screenshot "+name, chromedp.FullScreenshot(100)) // 100: PNG
	dirs := []string{artifactsDir}
	if docs && os.Getenv("UPDATE_SCREENSHOTS") == "1" {
		dirs = append(dirs, docsScreensDir)
	}
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

func TestAccountPageInABrowser(t *testing.T) {
	b := newBrowser(t) // before the harness: skips before anything starts
	const apiKey = "key-browser-0123456789"
	h := newHarness(t, nil, withSettingsFile("../settings.example.json"))
	acc := h.connected(apiKey)
	const token = "tok_browser_0123456789"
	h.remember(token)

	// The CRM sends the owner's browser to accountUrl with the clientId.
	b.do("open the module from the CRM",
		chromedp.Navigate(crmPage(h.srv.URL+"/account", acc.ClientID.Reveal())),
		chromedp.Click(chromedp.ID("open-module"), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.ID("account-title")),
	)
	assert.Equal(t, h.srv.URL+"/account", run(b, "location", chromedp.Location()), "303 to the page, no clientId in the address")
	assert.Equal(t, "en", b.attr("html", "lang"))
	assert.Equal(t, "Demo module", b.text("#account-title"))
	assert.Equal(t, "Active", b.text("#status"))
	assert.Contains(t, b.text("main"), h.fake.URL, "the shop's address")

	// A bad value: refused next to its field, everything typed kept but the secret.
	b.do("fill the form with a bad account number",
		chromedp.SendKeys(chromedp.ID("setting-account_id"), "12ab"),
		chromedp.SendKeys(chromedp.ID("setting-api_token"), token),
		chromedp.SetValue(chromedp.ID("setting-environment"), "sandbox"),
		chromedp.Click(chromedp.ID("setting-sync_stock")), // untick
		chromedp.Click(chromedp.ID("settings-save")),
		chromedp.WaitVisible(chromedp.ID("setting-account_id-error")),
	)
	assert.Contains(t, b.text("#setting-account_id-error"), "Use digits only (3 to 12). For example: 4567")
	assert.Equal(t, "12ab", b.value("#setting-account_id"), "input kept")
	assert.Equal(t, "true", b.attr("#setting-account_id", "aria-invalid"))
	assert.Contains(t, strings.Fields(b.attr("#setting-account_id", "aria-describedby")), "setting-account_id-error")
	assert.Equal(t, "#setting-account_id", b.attr(".error-summary a", "href"), "the summary links to the field")
	assert.Equal(t, "sandbox", b.value("#setting-environment"), "select kept")
	assert.Equal(t, false, b.eval(`document.getElementById("setting-sync_stock").checked`), "unticked box kept")
	assert.Empty(t, b.value("#setting-api_token"), "a secret never comes back")
	assert.NotContains(t, b.html(), token)
	assert.Equal(t, "setting-account_id", b.eval(`document.activeElement.id`), "the first field to fix has the focus")
	saved, err := h.store.Get(t.Context(), acc.ID)
	require.NoError(t, err)
	assert.Empty(t, saved.Settings, "nothing saved from a refused form")
	b.screenshot("account-settings-error-desktop", true)

	// A good value saves; the secret is kept sealed and shown masked.
	b.do("correct the value and save",
		chromedp.Clear(chromedp.ID("setting-account_id")),
		chromedp.SendKeys(chromedp.ID("setting-account_id"), "4567"),
		chromedp.SendKeys(chromedp.ID("setting-api_token"), token),
		chromedp.Click(chromedp.ID("settings-save")),
		chromedp.WaitVisible(chromedp.CSS(".notice-saved")),
	)
	saved, err = h.store.Get(t.Context(), acc.ID)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"account_id": "4567", "api_token": token, "environment": "sandbox", "sync_stock": "false"}, saved.Settings)
	assert.Equal(t, "4567", b.value("#setting-account_id"))
	assert.Contains(t, b.text("#setting-api_token-saved"), "A value is saved")
	assert.NotContains(t, b.html(), token, "the saved secret is never sent back")
	b.screenshot("account-desktop", true)
	b.do("mobile", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	b.screenshot("account-mobile", true)
	b.do("desktop", chromedp.EmulateViewport(1280, 900))

	// The switcher: Spanish, then back.
	b.do("switch to Spanish",
		chromedp.Click(chromedp.CSS(`.langs a[hreflang="es"]`)),
		chromedp.WaitReady(chromedp.CSS(`html[lang="es"]`)),
	)
	assert.Equal(t, "Ajustes", b.text("#settings"))
	assert.Contains(t, b.text(`label[for="setting-account_id"]`), "Número de cuenta")
	assert.Equal(t, "true", b.attr(`.langs a[hreflang="es"]`, "aria-current"))
	b.screenshot("account-es-desktop", false)
	b.do("switch back to English",
		chromedp.Click(chromedp.CSS(`.langs a[hreflang="en"]`)),
		chromedp.WaitReady(chromedp.CSS(`html[lang="en"]`)),
	)

	// Disconnect: a confirmation page, then the CRM edit with active:false.
	editsBefore := len(h.fake.Edits())
	b.do("ask to switch off",
		chromedp.Click(chromedp.ID("disconnect-start")),
		chromedp.WaitVisible(chromedp.ID("disconnect-confirm")),
	)
	assert.Len(t, h.fake.Edits(), editsBefore, "asking changes nothing")
	b.screenshot("disconnect-confirm-desktop", false)
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
	assert.Equal(t, true, b.eval(`document.getElementById("disconnect-start") === null`), "no disconnect button any more")
	b.screenshot("disconnected-desktop", false)

	assert.Empty(t, b.Problems(), "no console errors, no CSP violations")
}
