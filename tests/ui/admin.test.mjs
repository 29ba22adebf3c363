// The admin UI in a real browser: Debian's Chromium driven by playwright-core.
//
// tests/tests/admin_ui.rs starts `ostore up` with two applications and runs
// this file with `node --test`, passing the server's address and the
// credentials it made in the environment:
//
//   OSTORE_URL                          the admin UI's origin (with the API): http://127.0.0.1:PORT
//   OSTORE_APPS_URL                     the applications' origin
//   OSTORE_ADMIN_ID / _SECRET           an admin credential, every scope
//   OSTORE_APP_ID / _SECRET             a credential of application `orders`
//   OSTORE_READER_ID / _SECRET          a `store-flow` credential that may only read
//   OSTORE_SCREENSHOTS (optional)       where to save screenshots of the main screens
//
// Application `store-flow` is the tutorial guest at /store/...; `orders` is
// the same guest at /orders/.... Each test makes the data it needs.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { launchChromium } from './browser.mjs';

const BASE = need('OSTORE_URL');
const APPS = need('OSTORE_APPS_URL');
const ADMIN = { id: need('OSTORE_ADMIN_ID'), secret: need('OSTORE_ADMIN_SECRET') };
const APP = { id: need('OSTORE_APP_ID'), secret: need('OSTORE_APP_SECRET') };
const READER = { id: need('OSTORE_READER_ID'), secret: need('OSTORE_READER_SECRET') };
const SHOTS = process.env.OSTORE_SCREENSHOTS;
const TUTORIAL = '_defaultUserObjectStore';
const PARTITION = 'ObjectStoreTutorial';
const ENV = `${BASE}/api/v1/organizations/default/environments/store-flow`;
const KEYS = `${ENV}/stores/${TUTORIAL}/partitions/${PARTITION}/keys`;

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set; run these tests through tests/tests/admin_ui.rs`);
  return value;
}

// ------------------------------------------------------------ the server, directly

/** A request to the tutorial guest (no token: it is the application's own HTTP route). */
async function guest(method, route, body) {
  const response = await fetch(`${APPS}${route}`, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: response.status, text: await response.text() };
}

async function guestStore(key, value) {
  const r = await guest('POST', '/store', { key, value });
  assert.equal(r.status, 200, r.text);
}

const tokens = new Map();
async function token(who) {
  if (!tokens.has(who.id)) {
    const response = await fetch(`${BASE}/accounts/api/v2/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ grant_type: 'client_credentials', client_id: who.id, client_secret: who.secret }),
    });
    assert.equal(response.status, 200);
    tokens.set(who.id, (await response.json()).access_token);
  }
  return tokens.get(who.id);
}

/** A REST call as the admin credential. */
async function rest(method, url, body) {
  const response = await fetch(url, {
    method,
    headers: { authorization: `Bearer ${await token(ADMIN)}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : null };
}

// ------------------------------------------------------------ the browser

let browser;

before(async () => {
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
});

/**
 * A new browser context (fresh profile storage) and page. At the end, the
 * page must have thrown no error, broken no content-security rule, and
 * asked nothing of any origin but the server's.
 */
async function openPage(t, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) problems.push(`CSP: ${m.text()}`);
  });
  page.on('request', (req) => {
    const url = req.url();
    if (!url.startsWith(`${BASE}/`) && !url.startsWith('data:') && !url.startsWith('blob:')) problems.push(`request to ${url}`);
  });
  t.after(async () => {
    // Text of a missing value (`undefined`, `NaN`) must never reach the page.
    if (!page.isClosed()) {
      const text = await page.locator('body').innerText();
      const leaked = text.match(/\b(undefined|NaN)\b/);
      if (leaked) problems.push(`the page shows "${leaked[0]}"`);
    }
    await context.close();
    assert.deepEqual(problems, [], 'the page misbehaved');
  });
  return page;
}

async function signIn(page, who) {
  await page.goto(`${BASE}/admin/`);
  await page.getByLabel('Client ID').fill(who.id);
  await page.getByLabel('Client secret').fill(who.secret);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Applications', level: 1 }).waitFor();
}

async function goTo(page, hash) {
  await page.goto(`${BASE}/admin/${hash}`);
}

async function shot(page, name, { fullPage = true } = {}) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage });
}

const keysHash = `#/o/default/e/store-flow/s/${TUTORIAL}/p/${PARTITION}`;

function keyRow(page, key) {
  return page.locator('table[aria-label="Keys"] tbody tr').filter({ has: page.getByRole('link', { name: key, exact: true }) });
}

/** The cells of a key's row, by column label. */
async function rowCells(row) {
  const cells = await row.locator('td').all();
  const out = {};
  for (const c of cells) {
    const label = await c.getAttribute('data-label');
    if (label) out[label] = (await c.innerText()).trim();
  }
  return out;
}

async function confirmDialog(page, button) {
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  const text = await dialog.innerText();
  await page.getByRole('dialog').getByRole('button', { name: button }).click();
  await dialog.waitFor({ state: 'hidden' });
  return text;
}

// ------------------------------------------------------------ tests

test('keys stored by the tutorial guest appear under the right store and partition with the right value', async (t) => {
  await guestStore('TestKey01', 'This is an object store test');
  await guestStore('profile', '{"name":"Ada","langs":["rust","wasm"]}');
  const blob = Uint8Array.from({ length: 600 }, (_, i) => (i * 7) % 256);
  const put = await rest('PUT', `${KEYS}/blob`, { valueType: 'BINARY', binaryValue: Buffer.from(blob).toString('base64') });
  assert.equal(put.status, 200);

  const page = await openPage(t);
  await page.goto(`${BASE}/admin/`);
  await shot(page, 'sign-in');
  await signIn(page, ADMIN);
  const apps = page.locator('table[aria-label="Applications"] tbody tr');
  assert.deepEqual((await apps.locator('td[data-label="Application"]').allInnerTexts()).sort(), ['orders', 'store-flow']);

  await page.getByRole('link', { name: 'store-flow', exact: true }).click();
  const storeRow = page.locator('table[aria-label="Stores"] tbody tr').filter({ hasText: 'DEFAULT_USER_STORE' });
  await storeRow.waitFor();
  assert.match(await storeRow.innerText(), /default/);
  await shot(page, 'stores');
  await storeRow.getByRole('link', { name: 'DEFAULT_USER_STORE' }).click();
  await page.getByRole('heading', { name: 'DEFAULT_USER_STORE', level: 1 }).waitFor();
  await page.getByRole('link', { name: PARTITION }).click();
  await page.getByRole('heading', { name: PARTITION, level: 1 }).waitFor();

  const row = keyRow(page, 'TestKey01');
  const cells = await rowCells(row);
  assert.equal(cells.Type, 'STRING');
  assert.equal(cells.Size, '28 B');
  assert.match(cells.Expires, /\d{4}/, 'the default store gives a 30-day expiry');
  assert.equal((await rowCells(keyRow(page, 'blob'))).Type, 'BINARY');
  assert.doesNotMatch(await page.locator('main').innerText(), /\bnull\b/);
  await shot(page, 'keys');

  // Prefix search narrows the list.
  await page.getByLabel('Keys starting with').fill('Test');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByRole('link', { name: 'Show all' }).waitFor();
  assert.deepEqual(await page.locator('table[aria-label="Keys"] tbody tr td.name').allInnerTexts(), ['TestKey01']);
  await page.getByLabel('Keys starting with').fill('nothing-starts-so');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByText('No key in this partition starts with “nothing-starts-so”.').waitFor();
  await page.getByRole('link', { name: 'Show all' }).click();

  // A string value as text.
  await keyRow(page, 'TestKey01').getByRole('link').click();
  await page.getByRole('heading', { name: 'TestKey01', level: 1 }).waitFor();
  assert.equal(await page.locator('#value').innerText(), 'This is an object store test');
  assert.equal(await page.locator('#fact-type').innerText(), 'STRING');
  assert.equal(await page.locator('#fact-size').innerText(), '28 bytes');

  // JSON text pretty-printed.
  await goTo(page, `${keysHash}/k/profile`);
  await page.getByRole('heading', { name: 'profile', level: 1 }).waitFor();
  assert.equal(await page.locator('#value').innerText(), JSON.stringify({ name: 'Ada', langs: ['rust', 'wasm'] }, null, 2));
  await shot(page, 'value-json');

  // Binary: a hex preview, its size, and a download of the exact bytes.
  await goTo(page, `${keysHash}/k/blob`);
  await page.getByRole('heading', { name: 'blob', level: 1 }).waitFor();
  assert.match(await page.getByText(/^Binary value/).innerText(), /600 bytes\. The first 512 are shown\./);
  const hex = (await page.locator('#value').innerText()).split('\n');
  assert.equal(hex.length, 32);
  assert.match(hex[0], /^00000000 {2}00 07 0e 15 1c 23 2a 31 38 3f 46 4d 54 5b 62 69 {2}/);
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: /^Download/ }).click(),
  ]);
  assert.deepEqual(new Uint8Array(await readFile(await download.path())), blob);
  assert.equal(download.suggestedFilename(), 'blob');
  await shot(page, 'value-binary');
});

test('deleting a key, then a partition, then a store in the UI removes them for the guest and the REST API', async (t) => {
  await guestStore('doomed', 'short-lived');
  await guestStore('keep', 'stays until its partition goes');
  assert.equal((await rest('PUT', `${ENV}/stores/archive`, { defaultTtlSeconds: null })).status, 200);
  assert.equal((await rest('PUT', `${ENV}/stores/archive/partitions/2025/keys/old`, { valueType: 'STRING', stringValue: 'x' })).status, 200);

  const page = await openPage(t);
  await signIn(page, ADMIN);

  // A key. Cancelling first (Escape) deletes nothing.
  await goTo(page, keysHash);
  await keyRow(page, 'doomed').getByRole('button', { name: 'Delete key doomed' }).click();
  await page.getByRole('dialog').waitFor();
  await page.keyboard.press('Escape');
  await page.getByRole('dialog').waitFor({ state: 'hidden' });
  assert.equal((await guest('GET', '/store/doomed')).status, 200);

  await keyRow(page, 'doomed').getByRole('button', { name: 'Delete key doomed' }).click();
  await page.getByRole('dialog').waitFor();
  await shot(page, 'delete-key-confirmation');
  const said = await confirmDialog(page, 'Delete key');
  assert.match(said, /Delete key doomed\?/);
  assert.match(said, /“doomed”.*partition “ObjectStoreTutorial” of store “DEFAULT_USER_STORE”/s);
  await page.getByText('Deleted key doomed.').waitFor();
  // The row (and its button) went; focus goes to the news, not to nowhere.
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Deleted key doomed.');
  assert.equal(await keyRow(page, 'doomed').count(), 0);
  assert.equal((await guest('GET', '/store/doomed')).status, 404);
  assert.equal((await rest('GET', `${KEYS}/doomed`)).status, 404);
  assert.equal((await guest('GET', '/store/keep')).text, 'stays until its partition goes');

  // The partition, from its store's page.
  await goTo(page, `#/o/default/e/store-flow/s/${TUTORIAL}`);
  const partitionRow = page.locator('table[aria-label="Partitions"] tbody tr').filter({ hasText: PARTITION });
  await partitionRow.getByRole('button', { name: `Delete partition ${PARTITION}` }).click();
  assert.match(await confirmDialog(page, 'Delete partition'), /every key in it/);
  await page.getByText(`Deleted partition ${PARTITION}.`).waitFor();
  assert.equal(await partitionRow.count(), 0);
  assert.equal((await guest('GET', '/store/keep')).status, 404);
  assert.equal((await guest('GET', '/store')).text, '');
  const partitions = await rest('GET', `${ENV}/stores/${TUTORIAL}/partitions`);
  assert.ok(!partitions.json.values.includes(PARTITION), JSON.stringify(partitions.json));

  // A store of its own, from the store list.
  await goTo(page, '#/o/default/e/store-flow');
  const archive = page.locator('table[aria-label="Stores"] tbody tr').filter({ hasText: 'archive' });
  await archive.getByRole('button', { name: 'Delete store archive' }).click();
  assert.match(await confirmDialog(page, 'Delete store'), /“archive” of this application with all its partitions and its 1 key \(/);
  await page.getByText('Deleted store archive.').waitFor();
  assert.equal(await archive.count(), 0);
  assert.equal((await rest('GET', `${ENV}/stores/archive`)).status, 404);
  assert.equal((await rest('GET', `${ENV}/stores/archive/partitions/2025/keys/old`)).status, 404);

  // The default store, from its own page: the guest's keys go with it.
  await guestStore('again', 'in the default store');
  await goTo(page, `#/o/default/e/store-flow/s/${TUTORIAL}`);
  await page.getByRole('button', { name: 'Delete store…' }).click();
  assert.match(await confirmDialog(page, 'Delete store'), /“DEFAULT_USER_STORE” with all its partitions and its 1 key \(/);
  await page.getByText('Deleted store DEFAULT_USER_STORE.').waitFor();
  assert.equal((await rest('GET', `${ENV}/stores`)).json.values.length, 0);
  assert.equal((await guest('GET', '/store/again')).status, 404);
  // The default store always exists: the guest's read made it anew, empty.
  const stores = await rest('GET', `${ENV}/stores`);
  assert.deepEqual(stores.json.values.map((s) => [s.storeId, s.keyCount]), [[TUTORIAL, 0]]);
});

test('an application credential sees only its own application; a wrong credential gets an error, not data', async (t) => {
  await guestStore('secret-of-store-flow', 'not for orders');
  assert.equal((await guest('POST', '/orders', { key: 'order-1', value: 'two pizzas' })).status, 200);

  const page = await openPage(t);
  await signIn(page, APP);
  const rows = page.locator('table[aria-label="Applications"] tbody tr');
  assert.deepEqual(await rows.locator('td[data-label="Application"]').allInnerTexts(), ['orders']);
  await rows.getByRole('link', { name: 'orders' }).click();
  await page.getByRole('link', { name: 'DEFAULT_USER_STORE' }).click();
  await page.getByRole('link', { name: PARTITION }).click();
  await keyRow(page, 'order-1').waitFor();

  // Another application's pages, reached by address, show an error and none of its data.
  for (const hash of ['#/o/default/e/store-flow', `${keysHash}`, `${keysHash}/k/secret-of-store-flow`, '#/o/default/e/store-flow/usage']) {
    await goTo(page, hash);
    await page.getByRole('heading', { name: 'Not found', level: 1 }).waitFor();
    assert.match(await page.getByRole('alert').innerText(), /no environment "store-flow"/);
    const text = await page.locator('main').innerText();
    assert.ok(!text.includes('secret-of-store-flow') && !text.includes('not for orders'), text);
    assert.equal(await page.locator('main table').count(), 0);
  }
  await shot(page, 'other-application-not-found');

  // A wrong secret, and an unknown client: an error on the sign-in page.
  const stranger = await openPage(t);
  for (const who of [{ id: ADMIN.id, secret: 'not-the-secret' }, { id: 'no-such-client', secret: 'x' }]) {
    await stranger.goto(`${BASE}/admin/`);
    await stranger.getByLabel('Client ID').fill(who.id);
    await stranger.getByLabel('Client secret').fill(who.secret);
    await stranger.getByRole('button', { name: 'Sign in' }).click();
    const alert = stranger.getByRole('alert');
    await alert.waitFor();
    assert.match(await alert.innerText(), /Sign-in failed\s+The client ID or secret is wrong/);
    assert.equal(await stranger.evaluate(() => sessionStorage.length), 0);
    assert.equal(await stranger.getByRole('heading', { name: 'Applications' }).count(), 0);
  }
  await shot(stranger, 'sign-in-failed');
  // A deep link without signing in asks to sign in and shows nothing.
  await stranger.goto(`${BASE}/admin/${keysHash}/k/secret-of-store-flow`);
  await stranger.getByRole('heading', { name: 'Sign in' }).waitFor();
  assert.ok(!(await stranger.locator('body').innerText()).includes('not for orders'));
});

test('a credential that may only read sees no controls to change anything', async (t) => {
  await guestStore('protected', 'still here');
  const page = await openPage(t);
  await signIn(page, READER);
  await goTo(page, keysHash);
  await keyRow(page, 'protected').waitFor();
  assert.equal(await page.getByRole('button', { name: /Delete/ }).count(), 0);
  assert.equal(await page.getByRole('link', { name: 'New key' }).count(), 0);
  await goTo(page, `${keysHash}/k/protected`);
  assert.equal(await page.locator('#value').innerText(), 'still here');
  for (const name of [/Delete/, /Edit/, /Set TTL/]) {
    assert.equal(await page.getByRole('button', { name }).count(), 0);
  }
  await goTo(page, `#/o/default/e/store-flow/s/${TUTORIAL}`);
  await page.getByRole('link', { name: PARTITION }).waitFor();
  assert.equal(await page.getByRole('button', { name: /Delete/ }).count(), 0);
});

test('errors from the API are told in words, and names a browser cannot send are refused, not mistaken', async (t) => {
  await guestStore('vanishing', 'gone before the click');
  await guestStore('..', 'dot dot');
  await guestStore('bystander', 'must survive');
  const page = await openPage(t);
  await signIn(page, ADMIN);

  // Deleted by someone else while the page was open.
  await goTo(page, `${keysHash}/k/vanishing`);
  await page.getByRole('heading', { name: 'vanishing', level: 1 }).waitFor();
  assert.equal((await rest('DELETE', `${KEYS}/vanishing`)).status, 204);
  await page.getByRole('button', { name: 'Delete key…' }).click();
  await confirmDialog(page, 'Delete key');
  assert.match(await page.getByRole('alert').innerText(), /Not found\s+It may have been deleted, or this credential may not see it \(key not found\)/);

  // A browser resolves `..` in a path, so a request for the key named `..`
  // would address the partition. Its row offers no link and no Delete;
  // its address, typed in, explains instead of acting.
  await goTo(page, `${keysHash}?prefix=..`);
  const row = page.locator('table[aria-label="Keys"] tbody tr').filter({ hasText: 'not reachable from a browser' });
  assert.equal(await row.locator('td.name').innerText(), '..not reachable from a browser');
  assert.equal(await row.getByRole('link').count(), 0);
  assert.equal(await row.getByRole('button').count(), 0);
  assert.equal((await guest('GET', '/store/bystander')).text, 'must survive');
  const left = await rest('GET', `${KEYS}?prefix=..`);
  assert.deepEqual(left.json.values.map((k) => k.keyId), ['..']);
  await goTo(page, `${keysHash}/k/..`);
  await page.getByRole('heading', { name: 'Not reachable from a browser', level: 1 }).waitFor();
});

test('numbers beyond 2^53 are shown and kept exactly; a malformed number is refused', async (t) => {
  const big = '9007199254740993';
  // Sent as text: a JavaScript number would round it before it left.
  const put = await fetch(`${KEYS}/big`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${await token(ADMIN)}`, 'content-type': 'application/json' },
    body: `{"valueType":"NUMBER","numberValue":${big}}`,
  });
  assert.equal(put.status, 200);
  const page = await openPage(t);
  await signIn(page, ADMIN);
  await goTo(page, `${keysHash}/k/big`);
  assert.equal(await page.locator('#value').innerText(), big);
  // Saving the TTL writes the value back: it must not be rounded.
  await page.getByRole('button', { name: 'Set TTL' }).click();
  await page.getByLabel('Never expires').check();
  await page.getByRole('button', { name: 'Save TTL' }).click();
  await page.locator('#fact-ttl', { hasText: /^never expires$/ }).waitFor();
  const raw = await fetch(`${KEYS}/big`, { headers: { authorization: `Bearer ${await token(ADMIN)}` } });
  assert.match(await raw.text(), /"numberValue":9007199254740993[,}]/);
  await page.getByRole('button', { name: 'Edit value' }).click();
  await page.getByLabel('Number', { exact: true }).fill('0x10');
  await page.getByRole('button', { name: 'Save value' }).click();
  assert.match(await page.getByRole('alert').innerText(), /must be a decimal number/);
  await page.getByLabel('Number', { exact: true }).fill('-12.5e3');
  await page.getByRole('button', { name: 'Save value' }).click();
  await page.locator('#value', { hasText: /^-12500(\.0)?$/ }).waitFor();

  // Past 64 bits the API refuses an integer rather than round it.
  await page.getByRole('button', { name: 'Edit value' }).click();
  await page.getByLabel('Number', { exact: true }).fill('18446744073709551617');
  await page.getByRole('button', { name: 'Save value' }).click();
  assert.match(await page.getByRole('alert').innerText(), /integer beyond 64 bits/);

  // Text holding JSON is pretty-printed with its numbers as written.
  await guestStore('json-numbers', '{"id": 12345678901234567891, "x": 1.10}');
  await goTo(page, `${keysHash}/k/json-numbers`);
  assert.equal(await page.locator('#value').innerText(), '{\n  "id": 12345678901234567891,\n  "x": 1.10\n}');
});

test('looking at a key in the UI does not extend its rolling TTL', async (t) => {
  const put = await rest('PUT', `${KEYS}/rolling-look`, { valueType: 'STRING', stringValue: 'r', ttlSeconds: 8, rollingTtl: true });
  assert.equal(put.status, 200);
  const before = put.json.expiresAt;
  // Past a quarter of the window, where a read would move the expiry.
  await new Promise((resolve) => { setTimeout(resolve, 2200); });
  const page = await openPage(t);
  await signIn(page, ADMIN);
  await goTo(page, `${keysHash}/k/rolling-look`);
  assert.equal(await page.locator('#fact-ttl').innerText(), '8 seconds, rolling (reads extend it)');
  assert.equal((await rest('GET', `${KEYS}/rolling-look?peek=true`)).json.expiresAt, before);
});

test('the session lives in the page only: nothing in storage, a reload asks to sign in and returns to the same place', async (t) => {
  await guestStore('deep', 'linked');
  const page = await openPage(t);
  await signIn(page, ADMIN);
  await goTo(page, `${keysHash}/k/deep`);
  await page.locator('#value').waitFor();
  assert.deepEqual(await page.evaluate(() => [sessionStorage.length, localStorage.length, document.cookie]), [0, 0, '']);
  await page.reload();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await page.getByLabel('Client ID').fill(ADMIN.id);
  await page.getByLabel('Client secret').fill(ADMIN.secret);
  await page.getByRole('button', { name: 'Sign in' }).click();
  assert.equal(await page.locator('#value').innerText(), 'linked');
});

test('paging goes forward and back, and Back from a key returns to its page', async (t) => {
  const page = await openPage(t);
  for (let i = 0; i < 30; i += 1) await guestStore(`page-${String(i).padStart(2, '0')}`, 'p');
  await signIn(page, ADMIN);
  await goTo(page, `${keysHash}?prefix=page-`);
  const names = () => page.locator('table[aria-label="Keys"] tbody td.name').allInnerTexts();
  // The page renders once its listing has loaded; read it after that.
  await page.locator('.pager .where').waitFor();
  const first = await names();
  assert.equal(first.length, 25);
  assert.equal(await page.getByText('Page 1 · 25 keys').count(), 1);
  await page.getByRole('button', { name: 'Next →' }).click();
  await page.getByText('Page 2 · 5 keys').waitFor();
  const second = await names();
  assert.deepEqual([...first, ...second].sort(), Array.from({ length: 30 }, (_, i) => `page-${String(i).padStart(2, '0')}`));
  // At the last page, focus lands on the page count rather than on nothing.
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Page 2 · 5 keys');
  await page.getByRole('link', { name: second[0], exact: true }).click();
  await page.getByRole('heading', { name: second[0], level: 1 }).waitFor();
  await page.goBack();
  await page.getByText('Page 2 · 5 keys').waitFor();
  await page.getByRole('button', { name: '← Previous' }).click();
  await page.getByText('Page 1 · 25 keys').waitFor();
  assert.deepEqual(await names(), first);
});

test('string values are created and edited, conflicts are caught, and a key TTL is set', async (t) => {
  await guestStore('anchor', 'makes the partition exist');
  const page = await openPage(t);
  await signIn(page, ADMIN);

  // Create.
  await goTo(page, keysHash);
  await page.getByRole('link', { name: 'New key' }).click();
  await page.getByLabel('Key', { exact: true }).fill('greeting');
  await page.getByLabel('Text value').fill('hello');
  await shot(page, 'new-key');
  await page.getByRole('button', { name: 'Create key' }).click();
  await page.getByText('Created key greeting.').waitFor();
  assert.equal((await guest('GET', '/store/greeting')).text, 'hello');

  // Creating it again does not overwrite it.
  await goTo(page, `${keysHash}/new`);
  await page.getByLabel('Key', { exact: true }).fill('greeting');
  await page.getByLabel('Text value').fill('overwritten?');
  await page.getByRole('button', { name: 'Create key' }).click();
  assert.match(await page.getByRole('alert').innerText(), /A key named “greeting” already exists/);
  assert.equal((await guest('GET', '/store/greeting')).text, 'hello');

  // Edit.
  await goTo(page, `${keysHash}/k/greeting`);
  await page.getByRole('button', { name: 'Edit value' }).click();
  await page.getByLabel('Text', { exact: true }).fill('hello, world');
  await page.getByRole('button', { name: 'Save value' }).click();
  await page.getByText('Saved the new value.').waitFor();
  assert.equal(await page.locator('#value').innerText(), 'hello, world');
  assert.equal((await guest('GET', '/store/greeting')).text, 'hello, world');

  // An edit over a change made meanwhile is refused; the other change stays.
  await page.getByRole('button', { name: 'Edit value' }).click();
  await guestStore('greeting', 'changed by the guest');
  await page.getByLabel('Text', { exact: true }).fill('stale edit');
  await page.getByRole('button', { name: 'Save value' }).click();
  assert.match(await page.getByRole('alert').innerText(), /Changed meanwhile/);
  // The Save button was busy and lost focus; the alert has it now.
  assert.equal(await page.evaluate(() => document.activeElement.getAttribute('role')), 'alert');
  assert.equal((await guest('GET', '/store/greeting')).text, 'changed by the guest');

  // Never expires. (Away and back, for the current version.)
  await goTo(page, keysHash);
  await goTo(page, `${keysHash}/k/greeting`);
  await page.getByRole('button', { name: 'Set TTL' }).click();
  await page.getByLabel('Never expires').check();
  await page.getByRole('button', { name: 'Save TTL' }).click();
  await page.locator('#fact-ttl', { hasText: /^never expires$/ }).waitFor();
  assert.equal(await page.locator('#fact-expires').innerText(), 'never');
  await page.getByText('Saved the new TTL.').waitFor();
  let value = (await rest('GET', `${KEYS}/greeting`)).json;
  assert.equal(value.expiresAt, null);
  assert.equal(value.stringValue, 'changed by the guest');

  // Two seconds: the key then really expires, for the guest too.
  await page.getByRole('button', { name: 'Set TTL' }).click();
  await page.getByLabel('Expires after').check();
  await page.getByLabel('TTL in seconds').fill('2');
  await page.getByRole('button', { name: 'Save TTL' }).click();
  await page.locator('#fact-ttl', { hasText: /^2 seconds, static$/ }).waitFor();
  value = (await rest('GET', `${KEYS}/greeting`)).json;
  assert.equal(value.ttlSeconds, 2);
  assert.ok(Date.parse(value.expiresAt) - Date.now() <= 2000);
  let status = 200;
  for (let i = 0; i < 40 && status === 200; i += 1) {
    await new Promise((resolve) => { setTimeout(resolve, 250); });
    status = (await guest('GET', '/store/greeting')).status;
  }
  assert.equal(status, 404, 'the key expired');

  // A bad TTL is caught in the form.
  await goTo(page, `${keysHash}/k/anchor`);
  await page.getByRole('button', { name: 'Set TTL' }).click();
  await page.getByLabel('Expires after').check();
  await page.getByLabel('TTL in seconds').fill('0');
  await page.getByRole('button', { name: 'Save TTL' }).click();
  assert.match(await page.getByRole('alert').innerText(), /at least 1/);
});

test('the usage charts show the request counts that the Stats API reports', async (t) => {
  for (let i = 0; i < 5; i += 1) await guestStore(`usage-${i}`, 'x'.repeat(100));
  for (let i = 0; i < 7; i += 1) await guest('GET', '/store/usage-1');
  const page = await openPage(t);
  await signIn(page, ADMIN);
  await goTo(page, '#/o/default/e/store-flow/usage');
  await page.locator('#limits').waitFor();
  await shot(page, 'usage');

  const bars = async (id) => page.locator(`#${id} rect.bar`).evaluateAll((rects) => rects.map((r) => [r.dataset.label, Number(r.dataset.value)]));
  const daily = await bars('requests-daily');
  const monthly = await bars('requests-monthly');
  assert.equal(daily.length, 30);
  assert.equal(monthly.length, 12);

  const stats = `${BASE}/api/v1/stats/organizations/default/environments/store-flow`;
  const reported = async (period, first, last) => (await rest('GET', `${stats}?period=${period}&startDate=${first}&endDate=${last}`)).json;
  const apiDaily = await reported('1day', daily[0][0], daily[29][0]);
  assert.deepEqual(daily, apiDaily.map((p) => [p.timeStamp.slice(0, 10), p.objectStoreRequestCount]));
  const apiMonthly = await reported('1month', `${monthly[0][0]}-01`, daily[29][0]);
  assert.deepEqual(monthly, apiMonthly.map((p) => [p.timeStamp.slice(0, 7), p.objectStoreRequestCount]));
  // Today holds at least this test's 12 guest requests.
  assert.ok(daily[29][1] >= 12, JSON.stringify(daily[29]));

  // Keys and bytes per store, and the limits, match the REST API.
  const stores = (await rest('GET', `${ENV}/stores`)).json.values;
  const keyBars = await bars('keys-per-store');
  assert.deepEqual(keyBars, stores.map((s) => [s.storeId === TUTORIAL ? 'DEFAULT_USER_STORE' : s.storeId, s.keyCount]));
  const usage = (await rest('GET', `${ENV}/usage`)).json;
  const limits = await page.locator('#limits').innerText();
  assert.match(limits, new RegExp(`Keys\\s+${usage.keyCount} \\(no limit\\)`));
  assert.match(limits, new RegExp(`Stores\\s+${usage.storeCount} of 1,000`));
});

test('everything works from the keyboard: sign in, browse to a key, cancel and confirm its deletion', async (t) => {
  await guestStore('by-keyboard', 'typed, not clicked');
  const page = await openPage(t);
  await page.goto(`${BASE}/admin/`);
  await page.getByLabel('Client ID').waitFor();
  // The sign-in form has focus on arrival.
  await page.keyboard.type(ADMIN.id);
  await page.keyboard.press('Tab');
  await page.keyboard.type(ADMIN.secret);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Applications', level: 1 }).waitFor();
  // The skip link goes to the page's heading, and stays on the page.
  // (It is first in the page, shown when focused.)
  await page.getByRole('link', { name: 'Skip to content' }).focus();
  assert.ok(await page.getByRole('link', { name: 'Skip to content' }).isVisible());
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Applications');
  await page.getByRole('heading', { name: 'Applications', level: 1 }).waitFor();

  /** Presses Tab until the focused element is `name` (its label, for a field), then Enter unless told not to. */
  const tabTo = async (name, { enter = true } = {}) => {
    for (let i = 0; i < 60; i += 1) {
      await page.keyboard.press('Tab');
      const focused = await page.evaluate(() => {
        const el = document.activeElement;
        if (!el) return '';
        const label = el.labels && el.labels[0] ? el.labels[0].textContent : '';
        return (el.getAttribute('aria-label') || label || el.textContent || '').trim();
      });
      if (focused === name) {
        if (enter) await page.keyboard.press('Enter');
        return;
      }
    }
    assert.fail(`Tab never reached ${name}`);
  };
  await tabTo('store-flow');
  await page.getByRole('heading', { name: 'store-flow', level: 1 }).waitFor();
  await tabTo('DEFAULT_USER_STORE');
  await page.getByRole('heading', { name: 'DEFAULT_USER_STORE', level: 1 }).waitFor();
  await tabTo(PARTITION);
  await page.getByRole('heading', { name: PARTITION, level: 1 }).waitFor();
  // Other tests leave many keys here: search for it.
  await tabTo('Keys starting with', { enter: false });
  await page.keyboard.type('by-key');
  await page.keyboard.press('Enter');
  await page.getByRole('link', { name: 'Show all' }).waitFor();
  await tabTo('by-keyboard');
  await page.getByRole('heading', { name: 'by-keyboard', level: 1 }).waitFor();

  await tabTo('Delete key…');
  await page.getByRole('dialog').waitFor();
  // Cancel has focus: Enter there, or Escape, deletes nothing.
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Cancel');
  await page.keyboard.press('Escape');
  await page.getByRole('dialog').waitFor({ state: 'hidden' });
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Delete key…', 'focus returns to the button');
  assert.equal((await guest('GET', '/store/by-keyboard')).status, 200);

  await page.keyboard.press('Enter');
  await page.getByRole('dialog').waitFor();
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Delete key');
  await page.keyboard.press('Enter');
  await page.getByText('Deleted key by-keyboard.').waitFor();
  assert.equal((await guest('GET', '/store/by-keyboard')).status, 404);
});

test('at phone width nothing scrolls sideways and tables stack into labelled rows', async (t) => {
  await guestStore('a-rather-long-key-name-that-must-wrap-on-a-narrow-phone-screen-somewhere', 'v');
  const page = await openPage(t, { width: 390, height: 844 });
  await signIn(page, ADMIN);
  for (const hash of [keysHash, '#/o/default/e/store-flow', '#/o/default/e/store-flow/usage', `${keysHash}/k/a-rather-long-key-name-that-must-wrap-on-a-narrow-phone-screen-somewhere`]) {
    await goTo(page, hash);
    await page.locator('main h1').waitFor();
    await page.locator('main .status').waitFor({ state: 'detached' });
    const [scroll, width] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    assert.ok(scroll <= width, `${hash}: the page is ${scroll}px wide in a ${width}px window`);
    if (hash === keysHash) {
      assert.equal(await page.locator('table[aria-label="Keys"] thead').evaluate((el) => getComputedStyle(el).display), 'none');
      await shot(page, 'phone-keys', { fullPage: false });
    }
  }
});

test('names and values are shown as text, never run as markup', async (t) => {
  const evil = '<img src=x onerror="window.pwned=1">';
  const put = await rest('PUT', `${KEYS}/${encodeURIComponent(evil)}`, { valueType: 'STRING', stringValue: '<script>window.pwned=2</script>' });
  assert.equal(put.status, 200);
  const page = await openPage(t);
  await signIn(page, ADMIN);
  // Through the search, which puts the name in the page twice more.
  await goTo(page, `${keysHash}?prefix=${encodeURIComponent('<img')}`);
  assert.equal(await page.getByLabel('Keys starting with').inputValue(), '<img');
  await page.getByRole('link', { name: evil, exact: true }).click();
  await page.getByRole('heading', { name: evil, level: 1 }).waitFor();
  assert.equal(await page.locator('#value').innerText(), '<script>window.pwned=2</script>');
  assert.equal(await page.evaluate(() => window.pwned), undefined);
  assert.equal(await page.locator('main img').count(), 0);
});
