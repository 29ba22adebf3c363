// ostore admin: a single page over the REST and Stats APIs.
//
// It holds its bearer token in this page's memory only, never in storage:
// the applications' pages may share this origin, and must find nothing
// there. So a reload asks to sign in again (and then returns to the same
// place). It can do exactly what the signed-in credential may do; the
// server checks every call. Names and values from the store are only ever
// put into the page as text nodes, never as markup.
'use strict';

const DEFAULT_STORE = '_defaultUserObjectStore';
const DEFAULT_STORE_LABEL = 'DEFAULT_USER_STORE';
const TOKEN_PATH = '/accounts/api/v2/oauth2/token';
const SVG_NS = 'http://www.w3.org/2000/svg';
// The scopes that show the controls which need them.
const MANAGE_STORES = 'manage:store';
/** The server's default key length limit; the server has the last word. */
const MAX_KEY_BYTES = 1024;
const MANAGE_DATA = 'manage:store_data';
const METRICS = 'read:store_metrics';

const mainEl = document.getElementById('main');
const crumbsEl = document.getElementById('crumbs');
const sessionEl = document.getElementById('session');

// ---------------------------------------------------------------- DOM

/** Builds an element; strings become text nodes, `on*` attributes listeners. */
function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** Builds an SVG element. */
function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function loading(text) {
  return h('p', { class: 'status', role: 'status' }, text);
}

function emptyState(text) {
  return h('p', { class: 'empty' }, text);
}

function notice(text) {
  return h('p', { class: 'notice', role: 'status', tabindex: -1 }, text);
}

/** Shows what just happened in `where` and moves focus there, as the button that did it may be gone. */
function announce(where, text) {
  const note = notice(text);
  where.replaceChildren(note);
  note.focus();
}

// ---------------------------------------------------------------- formats

function formatBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

function formatCount(n) {
  return n === null || n === undefined ? '—' : Number(n).toLocaleString('en');
}

/** `1 key`, `2 keys`. */
function plural(n, noun) {
  return `${formatCount(n)} ${noun}${n === 1 ? '' : 's'}`;
}

function formatSeconds(s) {
  if (s === null || s === undefined) return 'never expires';
  const units = [['day', 86400], ['hour', 3600], ['minute', 60]];
  for (const [name, size] of units) {
    if (s >= size && s % size === 0) {
      const n = s / size;
      return `${n} ${name}${n === 1 ? '' : 's'}`;
    }
  }
  return `${s} second${s === 1 ? '' : 's'}`;
}

function relative(iso) {
  const diff = Date.parse(iso) - Date.now();
  const abs = Math.abs(diff) / 1000;
  const [n, unit] = abs < 90 ? [Math.round(abs), 'second']
    : abs < 5400 ? [Math.round(abs / 60), 'minute']
      : abs < 129600 ? [Math.round(abs / 3600), 'hour']
        : [Math.round(abs / 86400), 'day'];
  const text = `${n} ${unit}${n === 1 ? '' : 's'}`;
  return diff >= 0 ? `in ${text}` : `${text} ago`;
}

/** A `<time>` showing a UTC ISO timestamp in local time. */
function time(iso, { never = 'never', withRelative = false } = {}) {
  if (!iso) return h('span', {}, never);
  const local = new Date(iso).toLocaleString('en-GB', {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
  return h('time', { datetime: iso, title: iso }, withRelative ? `${local} (${relative(iso)})` : local);
}

function storeLabel(store) {
  return store === DEFAULT_STORE ? DEFAULT_STORE_LABEL : store;
}

function ttlText(seconds, rolling) {
  if (seconds === null || seconds === undefined) return 'never expires';
  return `${formatSeconds(seconds)}, ${rolling ? 'rolling (reads extend it)' : 'static'}`;
}

// ---------------------------------------------------------------- session

const session = {
  current: null,
  /** Why the last session ended, to say on the sign-in page. */
  ended: null,
  get() {
    if (this.current && this.current.expiresAt <= Date.now()) {
      this.clear('Your session expired. Sign in again to go on.');
    }
    return this.current;
  },
  save(s) {
    this.current = s;
    this.ended = null;
  },
  clear(why) {
    this.current = null;
    this.ended = why || null;
    environmentsCache = null;
    pagerMemory.clear();
  },
  /** Whether the token carries `scope` (older servers do not say: assume yes). */
  can(scope) {
    const scopes = this.current && this.current.scopes;
    return !scopes || scopes.includes(scope);
  },
};

/** Thrown when a call needs a session and there is none (or it ended). */
class SignedOut extends Error {
  constructor(message) {
    super(message || 'Sign in to continue.');
  }
}

/** An answer other than 2xx, or no answer at all (status 0). */
class ApiError extends Error {
  /** `code` is the object-store error's name (`quota-exceeded`, ...), if it is one. */
  constructor(status, message, retryAfter, code) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
    this.code = code;
  }
}

/** A mistake in a form, caught before anything is sent. */
class FormError extends Error {}

/** A name that a browser cannot put in a URL path. */
class Unreachable extends Error {}

/**
 * Parses an API answer, keeping a NUMBER value's exact decimal text: a
 * JavaScript number would round anything past 2^53.
 */
function parseJson(text) {
  return JSON.parse(text, (key, value, context) => (
    key === 'numberValue' && typeof value === 'number' && context && typeof context.source === 'string'
      ? context.source
      : value));
}

/** A number for a request body, written exactly as `text` says. */
function exactNumber(text) {
  return typeof JSON.rawJSON === 'function' ? JSON.rawJSON(text) : Number(text);
}

/** JSON's number grammar: no hex, no leading `+`, no `Infinity`. */
const NUMBER_TEXT = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;

async function send(path, { method = 'GET', body, headers = {} } = {}) {
  const s = session.get();
  if (!s) throw new SignedOut(session.ended || undefined);
  const init = { method, headers: { Authorization: `Bearer ${s.token}`, ...headers }, cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `The server did not answer (${err.message}).`);
  }
  const text = await response.text();
  let json = null;
  try {
    json = text ? parseJson(text) : null;
  } catch {
    json = null;
  }
  if (response.status === 401) {
    const why = 'Your session has ended (it expired, or its credential was deleted). Sign in again.';
    session.clear(why);
    throw new SignedOut(why);
  }
  if (!response.ok) {
    const message = (json && json.message) || text || response.statusText;
    throw new ApiError(response.status, message, response.headers.get('Retry-After'), json && json.error);
  }
  return { json, etag: response.headers.get('ETag') };
}

/** What went wrong, in words a person can act on. */
function explain(err) {
  if (err instanceof SignedOut) return ['Signed out', err.message];
  if (err instanceof FormError) return ['Check the form', err.message];
  if (err instanceof Unreachable) return ['Not reachable from a browser', err.message];
  if (!(err instanceof ApiError)) return ['Something went wrong', String(err && err.message ? err.message : err)];
  const says = err.message;
  switch (err.status) {
    case 0: return ['Cannot reach the server', `${says} Check that ostore is running, then try again.`];
    case 400: return ['The server refused this request', says];
    case 403: return ['Not allowed', `This credential may not do that: ${says}.`];
    case 404: return ['Not found', `It may have been deleted, or this credential may not see it (${says}).`];
    case 412: return ['Changed meanwhile', `Someone else changed it since this page loaded (${says}). Nothing was saved; open it again from the list to see the current version (copy your text first if you need it).`];
    case 413: return ['Too large', says];
    case 429: return err.code === 'quota-exceeded'
      ? ['Limit reached', `${says}. Delete something first, or raise the limit.`]
      : ['Too many requests', `${says}.${err.retryAfter ? ` Try again in ${err.retryAfter} s.` : ''}`];
    case 503: return ['The store cannot answer', says];
    default: return [`Error ${err.status}`, says];
  }
}

function errorBox(err, { withTitle = true } = {}) {
  const [title, detail] = explain(err);
  return h('div', { class: 'error', role: 'alert' }, withTitle ? h('strong', {}, title) : null, detail);
}

// ---------------------------------------------------------------- API paths

const enc = encodeURIComponent;

/**
 * A name as one segment of an API path. Browsers resolve `.` and `..` in
 * paths (even as `%2E`) before sending, so such names cannot be reached.
 */
function reachable(name) {
  return name !== '.' && name !== '..';
}

function seg(name) {
  if (!reachable(name)) {
    throw new Unreachable(`A browser cannot send the name “${name}” in a URL path, so this page cannot open or change it. The application itself, or a client that sends paths as they are (curl --path-as-is), can.`);
  }
  return encodeURIComponent(name);
}

function envPath(org, env) {
  return `/api/v1/organizations/${seg(org)}/environments/${seg(env)}`;
}

function storePath(r, store = r.store) {
  return `${envPath(r.org, r.env)}/stores/${seg(store)}`;
}

function partitionPath(r, partition = r.partition) {
  return `${storePath(r)}/partitions/${seg(partition)}`;
}

function keyPath(r, key = r.key) {
  return `${partitionPath(r)}/keys/${seg(key)}`;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : '';
}

let environmentsCache = null;

async function environments() {
  if (!environmentsCache) environmentsCache = (await send('/api/v1/environments')).json.values;
  return environmentsCache;
}

// ---------------------------------------------------------------- routing

/** `#/o/{org}/e/{env}[/usage | /s/{store}[/p/{partition}[/new | /k/{key}]]]`, each part URI-encoded. */
function hashFor(r) {
  let hash = '#/';
  if (r.org === undefined) return hash;
  hash += `o/${enc(r.org)}/e/${enc(r.env)}`;
  if (r.view === 'usage') return `${hash}/usage`;
  if (r.store === undefined) return hash;
  hash += `/s/${enc(r.store)}`;
  if (r.partition === undefined) return hash;
  hash += `/p/${enc(r.partition)}`;
  if (r.view === 'new') return `${hash}/new`;
  if (r.key !== undefined) hash += `/k/${enc(r.key)}`;
  return hash;
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, search] = raw.split('?');
  const parts = path.split('/').filter((p) => p !== '');
  let parsed;
  try {
    parsed = parts.map(decodeURIComponent);
  } catch {
    return { view: 'missing' };
  }
  const params = new URLSearchParams(search || '');
  const r = { params };
  const take = (tag) => {
    if (parsed[0] !== tag || parsed.length < 2) return undefined;
    const value = parsed[1];
    parsed = parsed.slice(2);
    return value;
  };
  if (parsed.length === 0) return { ...r, view: 'home' };
  r.org = take('o');
  r.env = take('e');
  if (r.org === undefined || r.env === undefined) return { view: 'missing' };
  if (parsed.length === 0) return { ...r, view: 'stores' };
  if (parsed.length === 1 && parsed[0] === 'usage') return { ...r, view: 'usage' };
  r.store = take('s');
  if (r.store === undefined) return { view: 'missing' };
  if (parsed.length === 0) return { ...r, view: 'store' };
  r.partition = take('p');
  if (r.partition === undefined) return { view: 'missing' };
  if (parsed.length === 0) return { ...r, view: 'partition' };
  if (parsed.length === 1 && parsed[0] === 'new') return { ...r, view: 'new' };
  r.key = take('k');
  if (r.key === undefined || parsed.length !== 0) return { view: 'missing' };
  return { ...r, view: 'key' };
}

function go(r) {
  location.hash = hashFor(r);
}

let generation = 0;
/** A message to show once on the next page (after a delete, say). */
let flash = null;

async function route() {
  const gen = ++generation;
  const r = parseHash();
  const current = () => gen === generation;
  if (!session.get()) {
    renderSignIn(flash || session.ended);
    flash = null;
    return;
  }
  mainEl.replaceChildren(loading('Loading…'));
  const message = flash;
  flash = null;
  try {
    // The applications name the breadcrumbs and fill the switcher.
    await environments();
    if (!current()) return;
    renderCrumbs(r);
    renderSessionBar(r);
    const views = { home: homeView, stores: storesView, usage: usageView, store: storeView, partition: partitionView, key: keyView, new: newKeyView };
    const view = views[r.view];
    const content = view ? await view(r, current) : missingView();
    if (!current()) return;
    mainEl.replaceChildren(...(message ? [notice(message)] : []), content);
    const heading = mainEl.querySelector('h1');
    if (heading) {
      heading.setAttribute('tabindex', '-1');
      document.title = `${heading.textContent} · ostore admin`;
    }
    focusMain();
  } catch (err) {
    if (!current()) return;
    if (err instanceof SignedOut) {
      renderSignIn(err.message);
      return;
    }
    mainEl.replaceChildren(h('h1', {}, explain(err)[0]), errorBox(err, { withTitle: false }), h('p', {}, h('a', { href: '#/' }, 'Back to the applications')));
    document.title = 'Error · ostore admin';
    focusMain();
  }
}

/** Moves focus to the new page's heading, so keyboard and screen-reader users start there. */
function focusMain() {
  const heading = mainEl.querySelector('h1');
  if (heading) heading.setAttribute('tabindex', '-1');
  (heading || mainEl).focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

/** Runs an action from a button, showing what happened in `where`; a lost session sends the person to sign in. */
async function act(button, where, action) {
  // A notice from before is no longer news.
  for (const old of mainEl.querySelectorAll('.notice')) old.remove();
  button.disabled = true;
  const status = loading('Working…');
  where.replaceChildren(status);
  try {
    await action();
    if (status.isConnected) where.replaceChildren();
  } catch (err) {
    if (err instanceof SignedOut) {
      renderSignIn(err.message);
      return;
    }
    // The button was disabled, which took focus away: give it to the news.
    const box = errorBox(err);
    box.setAttribute('tabindex', '-1');
    where.replaceChildren(box);
    box.focus();
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- chrome

function renderCrumbs(r) {
  const items = [];
  if (r.org !== undefined) {
    items.push(['Applications', { }]);
    const env = (environmentsCache || []).find((e) => e.organizationId === r.org && e.environmentId === r.env);
    items.push([env ? env.applicationName : r.env, { org: r.org, env: r.env }]);
    if (r.view === 'usage') items.push(['Usage', { org: r.org, env: r.env, view: 'usage' }]);
    if (r.store !== undefined) items.push([storeLabel(r.store), { org: r.org, env: r.env, store: r.store }]);
    if (r.partition !== undefined) items.push([r.partition, { org: r.org, env: r.env, store: r.store, partition: r.partition }]);
    if (r.key !== undefined) items.push([r.key, r]);
    if (r.view === 'new') items.push(['New key', r]);
  }
  if (items.length === 0) {
    crumbsEl.replaceChildren();
    return;
  }
  crumbsEl.replaceChildren(h('ol', {}, items.map(([label, target], i) => h('li', {},
    i === items.length - 1 ? h('span', { 'aria-current': 'page' }, label) : h('a', { href: hashFor(target) }, label)))));
}

function renderSessionBar(r) {
  const s = session.get();
  if (!s) {
    sessionEl.replaceChildren();
    return;
  }
  const signOut = h('button', { class: 'secondary', type: 'button', onclick: () => { session.clear(); renderSignIn('You are signed out.'); } }, 'Sign out');
  const parts = [h('span', { class: 'who' }, `Signed in as ${s.clientId}`), signOut];
  if (environmentsCache && environmentsCache.length > 1) {
    // A select with a button, not one that navigates on change: arrow
    // keys move through the options without leaving the page.
    const select = h('select', { 'aria-label': 'Application' },
      environmentsCache.map((e) => h('option', { value: hashFor({ org: e.organizationId, env: e.environmentId }), selected: e.organizationId === r.org && e.environmentId === r.env }, e.applicationName)));
    parts.unshift(h('form', { class: 'switch', onsubmit: (e) => { e.preventDefault(); location.hash = select.value; } },
      select, h('button', { type: 'submit', class: 'secondary' }, 'Open')));
  }
  sessionEl.replaceChildren(...parts);
}

function renderSignIn(message) {
  generation += 1;
  crumbsEl.replaceChildren();
  sessionEl.replaceChildren();
  document.title = 'Sign in · ostore admin';
  const feedback = h('div', { 'aria-live': 'polite' }, message ? notice(message) : null);
  const id = h('input', { type: 'text', id: 'client-id', name: 'client_id', autocomplete: 'username', required: true, spellcheck: 'false' });
  const secret = h('input', { type: 'password', id: 'client-secret', name: 'client_secret', autocomplete: 'current-password', required: true });
  const submit = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', {
    class: 'card signin',
    onsubmit: async (e) => {
      e.preventDefault();
      submit.disabled = true;
      feedback.replaceChildren(loading('Signing in…'));
      try {
        await signIn(id.value.trim(), secret.value);
        secret.value = '';
        route();
      } catch (err) {
        feedback.replaceChildren(err);
        secret.select();
      } finally {
        submit.disabled = false;
      }
    },
  },
  h('h1', {}, 'Sign in'),
  h('p', { class: 'sub' }, 'Use a client credential from ', h('code', {}, 'ostore credentials create'), '. An admin credential sees every application; an application credential sees only its own. The session lasts while this page stays open.'),
  feedback,
  h('div', { class: 'field' }, h('label', { for: 'client-id' }, 'Client ID'), id),
  h('div', { class: 'field' }, h('label', { for: 'client-secret' }, 'Client secret'), secret),
  submit);
  mainEl.replaceChildren(form);
  id.focus();
}

/** Exchanges client credentials for a token; throws an error element to show. */
async function signIn(clientId, clientSecret) {
  let response;
  try {
    response = await fetch(TOKEN_PATH, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ grant_type: 'client_credentials', client_id: clientId, client_secret: clientSecret }),
      cache: 'no-store',
    });
  } catch (err) {
    throw errorBox(new ApiError(0, `The server did not answer (${err.message}).`));
  }
  const json = await response.json().catch(() => null);
  if (!response.ok || !json || !json.access_token) {
    const why = response.status === 401
      ? 'The client ID or secret is wrong, or the credential was deleted.'
      : (json && json.message) || `The server answered ${response.status}.`;
    throw h('div', { class: 'error', role: 'alert' }, h('strong', {}, 'Sign-in failed'), why);
  }
  environmentsCache = null;
  session.save({
    token: json.access_token,
    clientId,
    scopes: typeof json.scope === 'string' ? json.scope.split(' ').filter(Boolean) : null,
    // Sign in again a little before the token runs out.
    expiresAt: Date.now() + Math.max(json.expires_in - 30, 1) * 1000,
  });
}

// ---------------------------------------------------------------- confirm dialog

const dialog = document.getElementById('confirm');
/** The open confirmation: how to answer it, and where focus goes back to. */
let pendingConfirm = null;

dialog.addEventListener('close', () => {
  // A `close` event is queued, not immediate: one from an earlier closing
  // can arrive after the dialog was opened again. Only a closed dialog
  // answers.
  if (dialog.open || !pendingConfirm) return;
  const { resolve, opener } = pendingConfirm;
  pendingConfirm = null;
  if (opener && opener.isConnected) opener.focus();
  resolve(dialog.returnValue === 'ok');
});

/** Asks before a deletion, naming what will go; resolves true if confirmed. */
function confirmDelete(title, text, action = 'Delete') {
  if (pendingConfirm) pendingConfirm.resolve(false);
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-ok').textContent = action;
  dialog.returnValue = 'cancel';
  return new Promise((resolve) => {
    pendingConfirm = { resolve, opener: document.activeElement };
    dialog.showModal();
  });
}

/**
 * A button that deletes something once a confirmation naming it says yes:
 * `ask` is the confirmation's [title, text, action], `path()` the API path
 * (it throws for a name a browser cannot send), `done()` shows the result.
 */
function deleteButton({ label, ariaLabel = null, cls, ask, path, feedback, done }) {
  const button = h('button', { type: 'button', class: cls, 'aria-label': ariaLabel }, label);
  button.addEventListener('click', async () => {
    if (!(await confirmDelete(...ask))) return;
    await act(button, feedback, async () => {
      await send(path(), { method: 'DELETE' });
      await done();
    });
  });
  return button;
}

/** What deleting a store asks; `whose` places it (“ of this application”). */
function storeDeletion(store, keyCount, bytes, whose = '') {
  const name = storeLabel(store);
  return [`Delete store ${name}?`,
    `This deletes the store “${name}”${whose} with all its partitions and its ${plural(keyCount, 'key')} (${formatBytes(bytes)}). It cannot be undone.`,
    'Delete store'];
}

function partitionDeletion(r, partition) {
  return [`Delete partition ${partition}?`,
    `This deletes the partition “${partition}” of store “${storeLabel(r.store)}” and every key in it. It cannot be undone.`,
    'Delete partition'];
}

function keyDeletion(r, key, size) {
  return [`Delete key ${key}?`,
    `This deletes the key “${key}” (${formatBytes(size)}) from partition “${r.partition}” of store “${storeLabel(r.store)}”. It cannot be undone.`,
    'Delete key'];
}

// ---------------------------------------------------------------- paging

/** Where each listing was, by page address, so that Back returns to the same page. */
const pagerMemory = new Map();

/**
 * A paged list: `load(token)` gives `{values, nextPageToken}`; `render(values)`
 * draws a page. Previous pages are remembered by their tokens.
 */
function pagedList({ load, render, empty, noun }) {
  const box = h('div');
  const memoryKey = `${location.hash}|${noun}`;
  const remembered = pagerMemory.get(memoryKey);
  let tokens = remembered ? [...remembered.tokens] : [null];
  let index = remembered ? remembered.index : 0;

  async function show(focusTarget) {
    let page = await load(tokens[index]);
    if (page.values.length === 0 && index > 0) {
      // The remembered page emptied meanwhile: start over.
      tokens = [null];
      index = 0;
      page = await load(null);
    }
    tokens.length = index + 1;
    if (page.nextPageToken) tokens.push(page.nextPageToken);
    pagerMemory.set(memoryKey, { tokens: tokens.slice(0, index + 1), index });
    if (page.values.length === 0) {
      box.replaceChildren(emptyState(empty));
      return;
    }
    const single = index === 0 && !page.nextPageToken;
    const where = h('span', { class: 'where', tabindex: -1 }, `Page ${index + 1} · ${plural(page.values.length, noun)}`);
    const prev = h('button', { type: 'button', class: 'secondary', disabled: index === 0, onclick: () => turn(-1) }, '← Previous');
    const next = h('button', { type: 'button', class: 'secondary', disabled: !page.nextPageToken, onclick: () => turn(1) }, 'Next →');
    const nav = h('nav', { class: 'pager', 'aria-label': `Pages of ${noun}s` }, prev, where, next);
    box.replaceChildren(...(single ? [render(page.values)] : [render(page.values), nav]));
    if (focusTarget) {
      const wanted = focusTarget === 'next' ? next : prev;
      (wanted.disabled ? where : wanted).focus();
    }
  }

  async function turn(step) {
    index = Math.max(0, index + step);
    box.prepend(loading(`Loading ${noun}s…`));
    try {
      await show(step > 0 ? 'next' : 'prev');
    } catch (err) {
      if (err instanceof SignedOut) renderSignIn(err.message);
      else box.replaceChildren(errorBox(err));
    }
  }

  async function reload() {
    await show();
  }

  return { element: box, show, reload };
}

function table(columns, rows, label) {
  return h('div', { class: 'table-wrap' }, h('table', { class: 'stack', 'aria-label': label },
    h('thead', {}, h('tr', {}, columns.map(([name, cls]) => h('th', { scope: 'col', class: cls }, name)))),
    h('tbody', {}, rows)));
}

/** A link to `target` named `name`, or just the name with a note when a browser cannot reach it. */
function nameLink(name, label, target) {
  return reachable(name)
    ? h('a', { href: hashFor(target) }, label)
    : h('span', { title: 'A browser cannot send this name in a URL path' }, label, h('span', { class: 'badge' }, 'not reachable from a browser'));
}

/** A table cell; its label heads it when the table is stacked at phone width. */
function cell(label, content, cls) {
  return h('td', { 'data-label': label || null, class: cls }, content);
}

// ---------------------------------------------------------------- views

function missingView() {
  return h('div', {}, h('h1', {}, 'Page not found'), h('p', {}, 'This address names nothing in the admin UI. ', h('a', { href: '#/' }, 'Go to the applications.')));
}

async function homeView() {
  const envs = await environments();
  const heading = h('h1', {}, 'Applications');
  if (envs.length === 0) {
    return h('div', {}, heading, emptyState('This credential may use no application that this server runs.'));
  }
  return h('div', {}, heading,
    h('p', { class: 'sub' }, 'Pick an application to browse its stores, partitions and keys, or to see its usage.'),
    table([['Application'], ['Organization'], ['Environment'], ['', 'actions']], envs.map((e) => h('tr', {},
      cell('Application', h('a', { href: hashFor({ org: e.organizationId, env: e.environmentId }) }, e.applicationName), 'name'),
      cell('Organization', e.organizationId),
      cell('Environment', e.environmentId),
      cell('', session.can(METRICS) ? h('a', { href: hashFor({ org: e.organizationId, env: e.environmentId, view: 'usage' }) }, 'Usage') : null, 'actions'))), 'Applications'));
}

async function envHeader(r, active) {
  const envs = await environments();
  const env = envs.find((e) => e.organizationId === r.org && e.environmentId === r.env);
  const name = env ? env.applicationName : r.env;
  const tab = (label, target, key) => (active === key
    ? h('strong', { 'aria-current': 'page' }, label)
    : h('a', { href: hashFor(target) }, label));
  return [
    h('h1', {}, active === 'usage' ? `Usage of ${name}` : name),
    h('p', { class: 'sub' }, `Organization ${r.org} · environment ${r.env} · `,
      tab('Stores', { org: r.org, env: r.env }, 'stores'),
      session.can(METRICS) || active === 'usage' ? [' · ', tab('Usage', { org: r.org, env: r.env, view: 'usage' }, 'usage')] : null),
  ];
}

async function storesView(r) {
  const header = await envHeader(r, 'stores');
  const feedback = h('div', { 'aria-live': 'polite' });
  const list = pagedList({
    noun: 'store',
    empty: 'This application has no stores yet. Stores appear once the application or the API writes to one.',
    load: async (token) => (await send(`${envPath(r.org, r.env)}/stores${query({ pageSize: 100, nextPageToken: token })}`)).json,
    render: (stores) => table([['Store'], ['Keys', 'num'], ['Size', 'num'], ['Default TTL'], ['', 'actions']],
      stores.map((s) => {
        const del = deleteButton({
          label: 'Delete',
          ariaLabel: `Delete store ${storeLabel(s.storeId)}`,
          cls: 'danger small',
          ask: storeDeletion(s.storeId, s.keyCount, s.bytesStored, ' of this application'),
          path: () => storePath(r, s.storeId),
          feedback,
          done: async () => {
            await list.reload();
            announce(feedback, `Deleted store ${storeLabel(s.storeId)}.`);
          },
        });
        return h('tr', {},
          cell('Store', [nameLink(s.storeId, storeLabel(s.storeId), { ...r, store: s.storeId }),
            s.storeId === DEFAULT_STORE ? h('span', { class: 'badge', title: DEFAULT_STORE }, 'default') : null], 'name'),
          cell('Keys', formatCount(s.keyCount), 'num'),
          cell('Size', formatBytes(s.bytesStored), 'num'),
          cell('Default TTL', ttlText(s.defaultTtlSeconds, !s.isFixedTtl)),
          cell('', session.can(MANAGE_STORES) && reachable(s.storeId) ? del : null, 'actions'));
      }), 'Stores'),
  });
  await list.show();
  return h('div', {}, header, feedback, list.element);
}

async function storeView(r) {
  const { json: store } = await send(storePath(r));
  const feedback = h('div', { 'aria-live': 'polite' });
  const deleteStore = deleteButton({
    label: 'Delete store…',
    cls: 'danger',
    ask: storeDeletion(r.store, store.keyCount, store.bytesStored),
    path: () => storePath(r),
    feedback,
    done: () => {
      flash = `Deleted store ${storeLabel(r.store)}.`;
      go({ org: r.org, env: r.env });
    },
  });
  const list = pagedList({
    noun: 'partition',
    empty: 'This store has no partitions yet.',
    load: async (token) => (await send(`${storePath(r)}/partitions${query({ pageSize: 100, nextPageToken: token })}`)).json,
    render: (partitions) => table([['Partition'], ['', 'actions']], partitions.map((p) => {
      const del = deleteButton({
        label: 'Delete',
        ariaLabel: `Delete partition ${p}`,
        cls: 'danger small',
        ask: partitionDeletion(r, p),
        path: () => partitionPath(r, p),
        feedback,
        done: async () => {
          await list.reload();
          announce(feedback, `Deleted partition ${p}.`);
        },
      });
      return h('tr', {}, cell('Partition', nameLink(p, p, { ...r, partition: p }), 'name'), cell('', session.can(MANAGE_STORES) && reachable(p) ? del : null, 'actions'));
    }), 'Partitions'),
  });
  await list.show();
  return h('div', {},
    h('h1', {}, storeLabel(r.store)),
    h('p', { class: 'sub' }, r.store === DEFAULT_STORE ? `The application's default store (${DEFAULT_STORE}).` : 'A store of this application.'),
    h('div', { class: 'card' }, h('dl', { class: 'facts' },
      h('dt', {}, 'Keys'), h('dd', {}, formatCount(store.keyCount), store.maxKeys !== null ? ` of at most ${formatCount(store.maxKeys)}` : ''),
      h('dt', {}, 'Size at rest'), h('dd', {}, formatBytes(store.bytesStored), store.maxBytes !== null ? ` of at most ${formatBytes(store.maxBytes)}` : ''),
      h('dt', {}, 'Default TTL'), h('dd', {}, ttlText(store.defaultTtlSeconds, !store.isFixedTtl)),
      h('dt', {}, 'Encrypted'), h('dd', {}, 'yes, AES-256-GCM'))),
    session.can(MANAGE_STORES) ? h('div', { class: 'toolbar' }, deleteStore) : null,
    feedback,
    h('h2', {}, 'Partitions'),
    list.element);
}

async function partitionView(r) {
  const prefix = r.params.get('prefix') || '';
  const pageSize = ['25', '100', '500', '1000'].includes(r.params.get('pageSize')) ? r.params.get('pageSize') : '25';
  const feedback = h('div', { 'aria-live': 'polite' });
  const list = pagedList({
    noun: 'key',
    empty: prefix ? `No key in this partition starts with “${prefix}”.` : 'This partition has no keys.',
    load: async (token) => (await send(`${partitionPath(r)}/keys${query({ pageSize, nextPageToken: token, prefix })}`)).json,
    render: (keys) => table([['Key'], ['Type'], ['Size', 'num'], ['Updated'], ['Expires'], ['', 'actions']], keys.map((k) => {
      const del = deleteButton({
        label: 'Delete',
        ariaLabel: `Delete key ${k.keyId}`,
        cls: 'danger small',
        ask: keyDeletion(r, k.keyId, k.size),
        path: () => keyPath(r, k.keyId),
        feedback,
        done: async () => {
          await list.reload();
          announce(feedback, `Deleted key ${k.keyId}.`);
        },
      });
      return h('tr', { dataset: { key: k.keyId } },
        cell('Key', nameLink(k.keyId, k.keyId, { ...r, key: k.keyId }), 'name'),
        cell('Type', k.valueType),
        cell('Size', formatBytes(k.size), 'num'),
        cell('Updated', time(k.updatedAt)),
        cell('Expires', time(k.expiresAt, { never: 'never' })),
        cell('', session.can(MANAGE_DATA) && reachable(k.keyId) ? del : null, 'actions'));
    }), 'Keys'),
  });
  await list.show();

  const search = h('input', { type: 'search', id: 'prefix', name: 'prefix', value: prefix, placeholder: 'Key prefix', spellcheck: 'false' });
  const size = h('select', { id: 'page-size', name: 'pageSize' }, ['25', '100', '500', '1000'].map((n) => h('option', { value: n, selected: n === pageSize }, n)));
  const searchForm = h('form', {
    class: 'toolbar',
    role: 'search',
    onsubmit: (e) => {
      e.preventDefault();
      const params = new URLSearchParams();
      if (search.value) params.set('prefix', search.value);
      if (size.value !== '25') params.set('pageSize', size.value);
      const text = params.toString();
      location.hash = hashFor(r) + (text ? `?${text}` : '');
    },
  },
  h('div', { class: 'grow' }, h('label', { for: 'prefix' }, 'Keys starting with'), search),
  h('div', {}, h('label', { for: 'page-size' }, 'Per page'), size),
  h('button', { type: 'submit' }, 'Search'),
  prefix ? h('a', { class: 'button secondary', href: hashFor(r) }, 'Show all') : null);

  const deletePartition = deleteButton({
    label: 'Delete partition…',
    cls: 'danger',
    ask: partitionDeletion(r, r.partition),
    path: () => partitionPath(r),
    feedback,
    done: () => {
      flash = `Deleted partition ${r.partition}.`;
      go({ org: r.org, env: r.env, store: r.store });
    },
  });
  return h('div', {},
    h('h1', {}, r.partition),
    h('p', { class: 'sub' }, `Partition of store ${storeLabel(r.store)}`),
    h('div', { class: 'toolbar' },
      session.can(MANAGE_DATA) ? h('a', { class: 'button', href: hashFor({ ...r, view: 'new' }) }, 'New key') : null,
      session.can(MANAGE_STORES) ? deletePartition : null),
    h('p', { class: 'hint spaced' }, 'Keys are listed in storage order: their names are encrypted at rest, so the store cannot sort them. Search by prefix to find one.'),
    searchForm,
    feedback,
    list.element);
}

function decodeBase64(b64) {
  const raw = atob(b64);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

function hexDump(bytes, limit = 512) {
  const lines = [];
  for (let offset = 0; offset < Math.min(bytes.length, limit); offset += 16) {
    const row = bytes.subarray(offset, Math.min(offset + 16, bytes.length, limit));
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, '0')).join(' ');
    const ascii = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${offset.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join('\n');
}

function valueSection(value) {
  if (value.valueType === 'BINARY') {
    const bytes = decodeBase64(value.binaryValue);
    const download = h('button', { type: 'button', class: 'secondary' }, `Download (${formatBytes(bytes.length)})`);
    download.addEventListener('click', () => {
      const url = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
      const a = h('a', { href: url, download: value.keyId.replace(/[\\/:*?"<>|]/g, '_') || 'value.bin' });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    });
    return [
      h('p', {}, `Binary value, ${formatCount(bytes.length)} bytes.${bytes.length > 512 ? ' The first 512 are shown.' : ''}`),
      h('pre', { class: 'value hex', id: 'value', 'aria-label': 'Hex preview' }, hexDump(bytes)),
      h('details', {}, h('summary', {}, 'Base64'), h('pre', { class: 'value' }, value.binaryValue.length > 8192 ? `${value.binaryValue.slice(0, 8192)}…` : value.binaryValue)),
      h('div', { class: 'toolbar' }, download),
    ];
  }
  if (value.valueType === 'NUMBER') {
    return [h('pre', { class: 'value', id: 'value' }, String(value.numberValue))];
  }
  const text = value.stringValue;
  const trimmed = text.trim();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      // Numbers as written: a JavaScript number would round some of them.
      const exact = (key, parsed, context) => (typeof parsed === 'number' && context && typeof context.source === 'string' && typeof JSON.rawJSON === 'function'
        ? JSON.rawJSON(context.source)
        : parsed);
      const pretty = JSON.stringify(JSON.parse(trimmed, exact), null, 2);
      return [h('p', {}, 'Text holding JSON, shown pretty-printed.'), h('pre', { class: 'value json', id: 'value' }, pretty)];
    } catch {
      // Not JSON after all: shown as text below.
    }
  }
  return [h('pre', { class: 'value', id: 'value' }, text)];
}

/** The TTL choices of a form: the partition's, none, or N seconds static or rolling. */
function ttlFields(initial) {
  const mode = initial.mode || 'default';
  const radios = [
    ['default', 'The store’s default'],
    ['never', 'Never expires'],
    ['seconds', 'Expires after'],
  ].map(([value, label]) => h('label', {}, h('input', { type: 'radio', name: 'ttl-mode', value, checked: value === mode }), label));
  const seconds = h('input', { type: 'number', id: 'ttl-seconds', name: 'ttl-seconds', min: 1, step: 1, value: initial.seconds || 3600, 'aria-label': 'TTL in seconds' });
  const rolling = h('input', { type: 'checkbox', id: 'ttl-rolling', name: 'ttl-rolling', checked: !!initial.rolling });
  const fieldset = h('fieldset', { class: 'field' }, h('legend', {}, 'Time to live'),
    h('div', { class: 'inline' }, radios, seconds, h('span', {}, 'seconds')),
    h('div', { class: 'inline' }, h('label', {}, rolling, 'Rolling: each read extends it')));
  // The seconds and rolling fields count only for "Expires after".
  const sync = () => {
    const off = fieldset.querySelector('input[name="ttl-mode"]:checked').value !== 'seconds';
    seconds.disabled = off;
    rolling.disabled = off;
  };
  fieldset.addEventListener('change', sync);
  sync();
  return {
    element: fieldset,
    /** Focuses the chosen option, as a keyboard user expects on opening. */
    focus() {
      fieldset.querySelector('input[name="ttl-mode"]:checked').focus();
    },
    /** The TTL fields of a write body, or an error message. */
    read() {
      const chosen = fieldset.querySelector('input[name="ttl-mode"]:checked').value;
      if (chosen === 'default') return {};
      if (chosen === 'never') return { ttlSeconds: null };
      const n = Number(seconds.value);
      if (!Number.isInteger(n) || n < 1) return { error: 'The TTL must be a whole number of seconds, at least 1.' };
      return { ttlSeconds: n, rollingTtl: rolling.checked };
    },
  };
}

async function keyView(r) {
  // A look, not a use: a rolling TTL is not extended by it.
  const { json: value, etag } = await send(`${keyPath(r)}?peek=true`);
  const feedback = h('div', { 'aria-live': 'polite' });
  const editable = value.valueType !== 'BINARY';
  const writeBody = (extra) => {
    const body = { valueType: value.valueType };
    if (value.valueType === 'BINARY') body.binaryValue = value.binaryValue;
    else if (value.valueType === 'NUMBER') body.numberValue = exactNumber(String(value.numberValue));
    else body.stringValue = value.stringValue;
    if (value.ttlSeconds !== null) {
      body.ttlSeconds = value.ttlSeconds;
      body.rollingTtl = value.rollingTtl;
    } else {
      body.ttlSeconds = null;
    }
    return { ...body, ...extra };
  };
  const save = async (body, button, done) => {
    await act(button, feedback, async () => {
      await send(keyPath(r), { method: 'PUT', body, headers: { 'If-Match': etag } });
      flash = done;
      route();
    });
  };

  // Edit the value, keeping its TTL.
  const editor = h('textarea', { id: 'edit-value', name: 'value', spellcheck: 'false' }, value.valueType === 'NUMBER' ? String(value.numberValue) : value.stringValue);
  const saveValue = h('button', { type: 'submit' }, 'Save value');
  const editForm = h('form', {
    class: 'card',
    hidden: true,
    novalidate: true,
    onsubmit: (e) => {
      e.preventDefault();
      if (value.valueType === 'NUMBER') {
        const text = editor.value.trim();
        if (!NUMBER_TEXT.test(text)) {
          feedback.replaceChildren(errorBox(new FormError('A NUMBER value must be a decimal number, like 42, -7 or 3.5e2.')));
          return;
        }
        save(writeBody({ numberValue: exactNumber(text) }), saveValue, 'Saved the new value.');
      } else {
        save(writeBody({ stringValue: editor.value }), saveValue, 'Saved the new value.');
      }
    },
  },
  h('h2', {}, 'Edit the value'),
  h('div', { class: 'field' }, h('label', { for: 'edit-value' }, value.valueType === 'NUMBER' ? 'Number' : 'Text'), editor),
  h('p', { class: 'hint' }, 'The key keeps its TTL setting; a static TTL counts again from now. Saving fails if someone changed the value since this page loaded.'),
  h('div', { class: 'form-actions' }, h('button', { type: 'button', class: 'secondary', onclick: () => { editForm.hidden = true; editButton.focus(); } }, 'Cancel'), saveValue));
  const editButton = h('button', { type: 'button', onclick: () => { editForm.hidden = false; ttlForm.hidden = true; editor.focus(); } }, 'Edit value');

  // Set the TTL, keeping the value.
  const ttl = ttlFields(value.ttlSeconds === null ? { mode: 'never' } : { mode: 'seconds', seconds: value.ttlSeconds, rolling: value.rollingTtl });
  const saveTtl = h('button', { type: 'submit' }, 'Save TTL');
  const ttlForm = h('form', {
    class: 'card',
    hidden: true,
    // The fields are checked here, with messages in words.
    novalidate: true,
    onsubmit: (e) => {
      e.preventDefault();
      const fields = ttl.read();
      if (fields.error) {
        feedback.replaceChildren(errorBox(new FormError(fields.error)));
        return;
      }
      const body = writeBody({});
      delete body.ttlSeconds;
      delete body.rollingTtl;
      save({ ...body, ...fields }, saveTtl, 'Saved the new TTL.');
    },
  },
  h('h2', {}, 'Set the TTL'),
  h('p', { class: 'hint' }, 'The expiry counts from now.'),
  ttl.element,
  h('div', { class: 'form-actions' }, h('button', { type: 'button', class: 'secondary', onclick: () => { ttlForm.hidden = true; ttlButton.focus(); } }, 'Cancel'), saveTtl));
  const ttlButton = h('button', { type: 'button', class: 'secondary', onclick: () => { ttlForm.hidden = false; editForm.hidden = true; ttl.focus(); } }, 'Set TTL');

  const deleteKey = deleteButton({
    label: 'Delete key…',
    cls: 'danger',
    ask: keyDeletion(r, r.key, value.size),
    path: () => keyPath(r),
    feedback,
    done: () => {
      flash = `Deleted key ${r.key}.`;
      go({ org: r.org, env: r.env, store: r.store, partition: r.partition });
    },
  });

  return h('div', {},
    h('h1', {}, r.key),
    h('p', { class: 'sub' }, `Key in partition ${r.partition} of store ${storeLabel(r.store)}`),
    session.can(MANAGE_DATA) ? h('div', { class: 'toolbar' }, editable ? editButton : null, ttlButton, deleteKey) : null,
    feedback, editForm, ttlForm,
    h('div', { class: 'value-layout' },
      h('section', { class: 'card', 'aria-labelledby': 'value-title' }, h('h2', { id: 'value-title' }, 'Value'), valueSection(value)),
      h('section', { class: 'card', 'aria-labelledby': 'facts-title' }, h('h2', { id: 'facts-title' }, 'Details'), h('dl', { class: 'facts' },
        h('dt', {}, 'Type'), h('dd', { id: 'fact-type' }, value.valueType),
        h('dt', {}, 'Size'), h('dd', { id: 'fact-size' }, `${formatCount(value.size)} bytes`),
        h('dt', {}, 'Created'), h('dd', {}, time(value.createdAt)),
        h('dt', {}, 'Updated'), h('dd', {}, time(value.updatedAt)),
        h('dt', {}, 'Expires'), h('dd', { id: 'fact-expires' }, time(value.expiresAt, { never: 'never', withRelative: true })),
        h('dt', {}, 'TTL'), h('dd', { id: 'fact-ttl' }, ttlText(value.ttlSeconds, value.rollingTtl)),
        h('dt', {}, 'Version'), h('dd', {}, etag ? etag.replace(/"/g, '') : '—')))));
}

async function newKeyView(r) {
  const feedback = h('div', { 'aria-live': 'polite' });
  const key = h('input', { type: 'text', id: 'new-key', name: 'key', required: true, spellcheck: 'false' });
  const text = h('textarea', { id: 'new-value', name: 'value', spellcheck: 'false' });
  const ttl = ttlFields({ mode: 'default' });
  const create = h('button', { type: 'submit' }, 'Create key');
  const form = h('form', {
    class: 'card',
    novalidate: true,
    onsubmit: async (e) => {
      e.preventDefault();
      const name = key.value;
      const bytes = new TextEncoder().encode(name).length;
      const problem = name === '' ? 'Give the key a name.'
        : bytes > MAX_KEY_BYTES ? `The name is ${formatCount(bytes)} bytes long in UTF-8; a key may have at most ${formatCount(MAX_KEY_BYTES)}.`
          : name === '.' || name === '..' ? `A browser cannot send the name “${name}” in a URL path; choose another.`
            : null;
      if (problem) {
        feedback.replaceChildren(errorBox(new FormError(problem)));
        key.focus();
        return;
      }
      const fields = ttl.read();
      if (fields.error) {
        feedback.replaceChildren(errorBox(new FormError(fields.error)));
        return;
      }
      await act(create, feedback, async () => {
        try {
          await send(keyPath(r, name), {
            method: 'PUT',
            // Never overwrite a key that exists: creating is not editing.
            headers: { 'If-None-Match': '*' },
            body: { valueType: 'STRING', stringValue: text.value, ...fields },
          });
        } catch (err) {
          if (err instanceof ApiError && err.status === 412) {
            throw new FormError(`A key named “${name}” already exists in this partition; open it to edit it.`);
          }
          throw err;
        }
        flash = `Created key ${name}.`;
        go({ ...r, view: 'key', key: name });
      });
    },
  },
  h('div', { class: 'field' }, h('label', { for: 'new-key' }, 'Key'), key, h('p', { class: 'hint' }, `Any text, up to ${formatCount(MAX_KEY_BYTES)} bytes in UTF-8 (unless the server sets another limit).`)),
  h('div', { class: 'field' }, h('label', { for: 'new-value' }, 'Text value'), text),
  ttl.element,
  h('div', { class: 'form-actions' }, h('a', { class: 'button secondary', href: hashFor({ ...r, view: 'partition' }) }, 'Cancel'), create));
  return h('div', {},
    h('h1', {}, 'New key'),
    h('p', { class: 'sub' }, `In partition ${r.partition} of store ${storeLabel(r.store)}. A key that already exists is not overwritten.`),
    feedback, form);
}

// ---------------------------------------------------------------- usage

function shortLabel(text) {
  return text.length > 18 ? `${text.slice(0, 17)}…` : text;
}

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

/**
 * A bar chart of `points` ({label, value, title}) as SVG, with the numbers
 * also as a table for screen readers and for copying.
 */
function barChart({ id, title, points, unit, format = formatCount }) {
  const width = 640;
  const height = 200;
  const pad = { left: 64, right: 8, top: 12, bottom: 28 };
  const max = Math.max(1, ...points.map((p) => p.value));
  const slot = (width - pad.left - pad.right) / Math.max(points.length, 1);
  const barWidth = Math.min(56, Math.max(2, slot * 0.7));
  const y = (v) => pad.top + (height - pad.top - pad.bottom) * (1 - v / max);
  const labelEvery = Math.ceil(points.length / 8);
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-labelledby': `${id}-title` },
    svg('title', { id: `${id}-title` }, `${title}: ${points.map((p) => `${p.label} ${format(p.value)}`).join(', ')}`),
    svg('line', { class: 'axis', x1: pad.left, x2: width - pad.right, y1: y(0), y2: y(0) }),
    svg('text', { x: pad.left - 6, y: y(max) + 4, 'text-anchor': 'end' }, format(max)),
    svg('text', { x: pad.left - 6, y: y(0) + 4, 'text-anchor': 'end' }, '0'),
    points.map((p, i) => {
      const x = pad.left + i * slot + (slot - barWidth) / 2;
      return [
        svg('rect', {
          class: 'bar', x, y: y(p.value), width: barWidth, height: Math.max(0, y(0) - y(p.value)),
          dataset: { label: p.label, value: p.value },
        }, svg('title', {}, `${p.title || p.label}: ${format(p.value)} ${unit}`)),
        // Label from the newest bar back, so that today's always is.
        (points.length - 1 - i) % labelEvery === 0 ? svg('text', { x: x + barWidth / 2, y: height - 8, 'text-anchor': 'middle' }, p.short || p.label) : null,
      ];
    }));
  return h('section', { class: 'card chart', id, 'aria-labelledby': `${id}-h` },
    h('h2', { id: `${id}-h` }, title),
    chart,
    h('details', {}, h('summary', {}, 'Show the numbers'),
      h('table', {}, h('tbody', {}, points.map((p) => h('tr', {}, h('th', { scope: 'row' }, p.title || p.label), h('td', { class: 'num' }, format(p.value))))))));
}

function meter(label, used, limit, format) {
  const id = `meter-${label.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
  if (limit === null || limit === undefined) {
    return h('div', { class: 'meter' }, h('div', { class: 'label' }, h('span', {}, label), h('span', {}, `${format(used)} (no limit)`)));
  }
  const share = limit > 0 ? Math.min(1, used / limit) : 1;
  const percent = Math.round(share * 100);
  return h('div', { class: `meter${share >= 1 ? ' full' : share >= 0.8 ? ' high' : ''}` },
    h('div', { class: 'label' }, h('span', { id }, label), h('span', {}, `${format(used)} of ${format(limit)} (${percent}%)`)),
    h('div', { class: 'track', role: 'meter', 'aria-labelledby': id, 'aria-valuemin': 0, 'aria-valuemax': limit, 'aria-valuenow': Math.min(used, limit) },
      h('div', { class: 'fill', dataset: { percent } })));
}

async function usageView(r) {
  const header = await envHeader(r, 'usage');
  const base = envPath(r.org, r.env);
  // Stores first: listing them is itself a request, and the charts below
  // should include it.
  const stores = [];
  let token = null;
  do {
    const page = (await send(`${base}/stores${query({ pageSize: 1000, nextPageToken: token })}`)).json;
    stores.push(...page.values);
    token = page.nextPageToken;
  } while (token);
  const { json: usage } = await send(`${base}/usage`);
  const today = new Date();
  const dayStart = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - 29));
  const monthStart = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth() - 11, 1));
  const statsBase = `/api/v1/stats/organizations/${enc(r.org)}/environments/${enc(r.env)}`;
  const [daily, monthly] = await Promise.all([
    send(`${statsBase}${query({ period: '1day', startDate: isoDay(dayStart), endDate: isoDay(today) })}`),
    send(`${statsBase}${query({ period: '1month', startDate: isoDay(monthStart), endDate: isoDay(today) })}`),
  ]);
  const monthName = (iso) => new Date(iso).toLocaleString('en-GB', { month: 'short', year: 'numeric', timeZone: 'UTC' });
  const limits = usage.limits;
  const content = h('div', {}, header,
    h('div', { class: 'grid2' },
      barChart({
        id: 'requests-daily',
        title: 'Requests per day (last 30 days)',
        unit: 'requests',
        points: daily.json.map((p) => ({ label: p.timeStamp.slice(0, 10), short: p.timeStamp.slice(5, 10), value: p.objectStoreRequestCount })),
      }),
      barChart({
        id: 'requests-monthly',
        title: 'Requests per month (last 12 months)',
        unit: 'requests',
        points: monthly.json.map((p) => ({ label: p.timeStamp.slice(0, 7), short: monthName(p.timeStamp).split(' ')[0], title: monthName(p.timeStamp), value: p.objectStoreRequestCount })),
      })),
    h('div', { class: 'grid2' },
      stores.length === 0
        ? h('section', { class: 'card' }, h('h2', {}, 'Keys per store'), emptyState('No stores yet.'))
        : barChart({ id: 'keys-per-store', title: 'Keys per store', unit: 'keys', points: stores.map((s) => ({ label: storeLabel(s.storeId), short: shortLabel(storeLabel(s.storeId)), value: s.keyCount })) }),
      stores.length === 0
        ? h('section', { class: 'card' }, h('h2', {}, 'Bytes per store'), emptyState('No stores yet.'))
        : barChart({ id: 'bytes-per-store', title: 'Bytes stored per store', unit: '', format: formatBytes, points: stores.map((s) => ({ label: storeLabel(s.storeId), short: shortLabel(storeLabel(s.storeId)), value: s.bytesStored })) })),
    h('section', { class: 'card', id: 'limits', 'aria-labelledby': 'limits-h' },
      h('h2', { id: 'limits-h' }, 'Limits'),
      meter('Keys', usage.keyCount, limits.maxKeys, formatCount),
      meter('Bytes stored', usage.bytesStored, limits.maxBytes, formatBytes),
      meter('Stores', usage.storeCount, limits.maxStores, formatCount),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Requests per second'), h('dd', {}, limits.requestsPerSecond === null ? 'no limit' : formatCount(limits.requestsPerSecond)),
        h('dt', {}, 'Longest key'), h('dd', {}, `${formatCount(limits.maxKeyBytes)} bytes`),
        h('dt', {}, 'Largest value'), h('dd', {}, formatBytes(limits.maxValueBytes)))));
  // Widths are set from script, as the page's policy forbids inline styles.
  for (const fill of content.querySelectorAll('.fill')) fill.style.width = `${fill.dataset.percent}%`;
  return content;
}

// ---------------------------------------------------------------- start

window.addEventListener('hashchange', () => {
  // Only `#/...` addresses are pages; others (`#main`) are places in one.
  if (location.hash === '' || location.hash.startsWith('#/')) route();
});
document.querySelector('.skip').addEventListener('click', (e) => {
  e.preventDefault();
  focusMain();
});
route();
