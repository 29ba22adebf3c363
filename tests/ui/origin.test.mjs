// An application's page cannot take over the admin UI: Debian's Chromium,
// driven by playwright-core.
//
// tests/tests/admin_ui.rs starts two hosts, each with the `pages` guest (a
// page at every path, and a service worker script that answers every
// request of its scope with a page of its own) mounted at `/...`:
//
//   OSTORE_APPS_URL / OSTORE_URL   a host as `ostore up` starts it: the
//                                  applications' origin, and the admin UI's own
//   OSTORE_SHARED_URL              a host with the admin UI at /admin/ on the
//                                  applications' listener (--admin-on-app-listener)

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium } from './browser.mjs';

const APPS = need('OSTORE_APPS_URL');
const ADMIN = need('OSTORE_URL');
const SHARED = need('OSTORE_SHARED_URL');

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set; run these tests through tests/tests/admin_ui.rs`);
  return value;
}

let browser;

before(async () => {
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
});

/** Registers `script` with scope `/` from a guest page of `origin`; says how it went. */
async function register(page, origin, script) {
  await page.goto(`${origin}/welcome`);
  assert.equal(await page.title(), 'a guest page');
  return page.evaluate(async (script) => {
    try {
      await navigator.serviceWorker.register(script, { scope: '/' });
      await navigator.serviceWorker.ready;
      return 'registered';
    } catch (e) {
      return `refused: ${e}`;
    }
  }, script);
}

/** The page at `origin`/admin/ is the host's UI: its sign-in form. */
async function expectAdminUi(page, origin) {
  const response = await page.goto(`${origin}/admin/`);
  // A window that a guest's page opens gets no handle on the UI, and no
  // page may frame it.
  const headers = response.headers();
  assert.equal(headers['cross-origin-opener-policy'], 'same-origin');
  assert.equal(headers['x-frame-options'], 'DENY');
  assert.match(headers['content-security-policy'], /frame-ancestors 'none'/);
  await page.getByLabel('Client ID').waitFor({ timeout: 10_000 });
  assert.equal(await page.title(), 'Sign in · ostore admin');
}

test("a guest's service worker takes the applications' origin, but not the admin UI's own", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  // The worker works: it is what a hostile application would use.
  assert.equal(await register(page, APPS, '/sw.js'), 'registered');
  await page.goto(`${APPS}/another/page`);
  assert.equal(await page.title(), 'taken over');
  // The admin UI, on its own origin, is untouched.
  await expectAdminUi(page, ADMIN);
  // And the applications' listener does not serve the UI at all.
  await page.goto(`${APPS}/admin/`);
  assert.equal(await page.title(), 'taken over', 'the guest answers /admin/ on its own origin');
  await context.close();
});

test('on an origin shared with the admin UI, the host refuses the applications\' service workers', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  // A worker script at the root, whose scope is `/` by default.
  const plain = await register(page, SHARED, '/sw.js');
  assert.match(plain, /^refused/);
  // A worker script below the root that asks for `/` with Service-Worker-Allowed.
  const widened = await register(page, SHARED, '/scoped/sw.js');
  assert.match(widened, /^refused/);
  // What the browser was told.
  const answers = await page.evaluate(async () => {
    const script = await fetch('/sw.js', { headers: { 'service-worker': 'script' } });
    const scoped = await fetch('/scoped/sw.js');
    return [script.status, await script.text(), scoped.status, await scoped.text()];
  });
  assert.equal(answers[0], 403);
  assert.match(answers[1], /may not register service workers/);
  assert.equal(answers[2], 502);
  assert.match(answers[3], /widens a service worker's scope/);
  // Nothing controls the UI: it is the host's page.
  await expectAdminUi(page, SHARED);
  assert.equal(await page.evaluate(() => navigator.serviceWorker.controller), null);
  // The guest's other pages are served as before.
  await page.goto(`${SHARED}/another/page`);
  assert.equal(await page.title(), 'a guest page');
  await context.close();
});
