// Lighthouse (accessibility, best practices) and axe-core against a running
// simpleconnect, signed in with a clientId the fake CRM printed. Run by hand,
// never by CI; its node packages live in a directory of their own, outside
// the repository (docs/accessibility.md has the commands):
//
//   node accessibility-audit.mjs <service base URL> <clientId> [langs, comma-separated] [out dir]
//
// For each language and form factor (mobile, desktop) it signs in the way
// the CRM does (a page whose form posts the clientId), then audits:
//   account                  GET /account?lang=<lang> (with "Open <module>")
//   settings-error           the settings form saved with a bad account number
//                            and a new token (303 back to the page: the token
//                            kept, the number to fix)
//   settings-error-reloaded  the same page reloaded (GET, 200: the draft)
//   disconnect               GET /account/disconnect (the confirmation)
//   not-found                GET /nowhere (an error page, 404)
// Each state is checked to be the page meant (its elements, html lang)
// before its scores count. Reports: <out dir>/lighthouse-<lang>-<form
// factor>.html, <out dir>/summary.json; one line per page on stdout.
import fs from 'node:fs';
import path from 'node:path';
import {createRequire} from 'node:module';
import puppeteer from 'puppeteer-core';
import {startFlow} from 'lighthouse';
import desktopConfig from 'lighthouse/core/config/desktop-config.js';

const require = createRequire(import.meta.url);
const axeSource = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const [base, clientId, langsArg = 'en,ru,es', outDir = 'reports'] = process.argv.slice(2);
if (!base || !clientId) {
  console.error('usage: node accessibility-audit.mjs <base> <clientId> [langs] [outDir]');
  process.exit(2);
}
const langs = langsArg.split(',');
fs.mkdirSync(outDir, {recursive: true});

const crmPage = (accountURL, id) => 'data:text/html;charset=utf-8,' + encodeURIComponent(
  `<!DOCTYPE html><html lang="en"><title>CRM</title><form method="post" action="${accountURL}">` +
  `<input type="hidden" name="clientId" value="${id}"><button id="go">Go</button></form></html>`);

async function launch(lang) {
  return puppeteer.launch({
    executablePath: process.env.CHROME_PATH || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage', `--lang=${lang}`, `--accept-lang=${lang}`],
  });
}

async function signIn(page) {
  await page.goto(crmPage(base + '/account', clientId));
  await Promise.all([page.waitForNavigation(), page.click('#go')]);
  if (!page.url().startsWith(base + '/account')) throw new Error('sign-in failed: ' + page.url());
}

// What each state must show, so that a score is never for the wrong page.
const expect = {
  'account': ['#account-title', '#open-app', '#settings-form'],
  'settings-error': ['#setting-account_id-error', '#setting-api_token-kept', '.error-summary'],
  'settings-error-reloaded': ['#setting-account_id-error', '#setting-api_token-kept', '.error-summary'],
  'disconnect': ['#disconnect-confirm'],
  'not-found': ['#message-title', '#next-step'],
};
async function check(page, name, lang) {
  for (const sel of expect[name]) {
    if (!(await page.$(sel))) throw new Error(`${name}: ${sel} missing at ${page.url()}`);
  }
  const htmlLang = await page.$eval('html', e => e.lang);
  if (htmlLang !== lang) throw new Error(`${name}: html lang ${htmlLang}, want ${lang}`);
}

// The states, in order; each is a URL or a function that navigates.
const states = lang => [
  ['account', base + '/account?lang=' + lang],
  ['settings-error', async page => {
    await page.type('#setting-account_id', '12ab');
    await page.type('#setting-api_token', 'tok_audit_0123456789');
    await Promise.all([page.waitForNavigation(), page.click('#settings-save')]);
  }],
  // The same form after a reload: the draft, answered 200 (a GET).
  ['settings-error-reloaded', base + '/account'],
  ['disconnect', base + '/account/disconnect'],
  ['not-found', base + '/nowhere'],
];

const summary = [];
for (const lang of langs) {
  for (const formFactor of ['mobile', 'desktop']) {
    const browser = await launch(lang);
    const page = await browser.newPage();
    await signIn(page);
    const flow = await startFlow(page, {
      name: `simpleconnect ${lang} ${formFactor}`,
      config: formFactor === 'desktop' ? desktopConfig : undefined,
      // Keep the session cookie: Lighthouse clears storage before a
      // navigation by default.
      // ignoreStatusCode: an error page (404) is a state to audit; by
      // default Lighthouse audits no 4xx page.
      flags: {onlyCategories: ['accessibility', 'best-practices'], disableStorageReset: true, ignoreStatusCode: true},
    });
    for (const [name, how] of states(lang)) {
      if (typeof how === 'string') await flow.navigate(how, {name});
      else await flow.navigate(async () => how(page), {name});
      await check(page, name, lang);
    }
    const result = await flow.createFlowResult();
    fs.writeFileSync(path.join(outDir, `lighthouse-${lang}-${formFactor}.html`), await flow.generateReport());
    for (const step of result.steps) {
      const lhr = step.lhr;
      const failed = lhr.runtimeError ? ['runtimeError:' + lhr.runtimeError.code] : [];
      for (const cat of Object.values(lhr.categories)) {
        for (const ref of cat.auditRefs) {
          const a = lhr.audits[ref.id];
          if (ref.weight > 0 && a.score !== null && a.score < 1) failed.push(`${cat.id}:${a.id}`);
        }
      }
      summary.push({
        tool: 'lighthouse', lang, formFactor, state: step.name, url: lhr.finalDisplayedUrl,
        accessibility: Math.round(lhr.categories.accessibility.score * 100),
        bestPractices: Math.round(lhr.categories['best-practices'].score * 100),
        failed,
      });
    }
    await browser.close();
  }

  // axe-core: WCAG 2.0/2.1/2.2 A and AA, and axe's best practices.
  const browser = await launch(lang);
  const page = await browser.newPage();
  await page.setViewport({width: 1280, height: 900});
  await signIn(page);
  for (const [name, how] of states(lang)) {
    if (typeof how === 'string') await page.goto(how);
    else await how(page);
    await check(page, name, lang);
    // Evaluated through DevTools, not a <script>: the page's CSP stays on.
    await page.evaluate(axeSource);
    const r = await page.evaluate(() => axe.run(document, {
      runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']},
    }));
    summary.push({
      tool: 'axe-core ' + r.testEngine.version, lang, state: name, url: page.url(),
      violations: r.violations.map(v => `${v.id} (${v.impact}, ${v.nodes.length} node${v.nodes.length > 1 ? 's' : ''}): ${v.help}`),
      incomplete: r.incomplete.map(v => `${v.id}: ${v.nodes.length}`),
      passes: r.passes.length,
    });
  }
  await browser.close();
}
fs.writeFileSync(path.join(outDir, 'summary.json'), JSON.stringify(summary, null, 2));
for (const s of summary) {
  if (s.tool === 'lighthouse') {
    console.log(`lighthouse ${s.lang} ${s.formFactor.padEnd(7)} ${s.state.padEnd(23)} a11y ${s.accessibility} bp ${s.bestPractices}${s.failed.length ? ' failed: ' + s.failed.join(', ') : ''}`);
  } else {
    console.log(`${s.tool} ${s.lang} ${s.state.padEnd(23)} violations ${s.violations.length}${s.violations.length ? ': ' + s.violations.join('; ') : ''} | incomplete ${s.incomplete.join(', ') || 0} | passes ${s.passes}`);
  }
}
