// ostore admin: a single page over the REST and Stats APIs.
//
// It holds its bearer token in this page's memory only, never in storage:
// the applications' pages may share this origin, and must find nothing
// there. So a reload asks to sign in again (and then returns to the same
// place). It can do exactly what the signed-in credential may do; the
// server checks every call. Names and values from the store are only ever
// put into the page as text nodes, never as markup.

import { crumbsEl, h, loading, mainEl, notice, sessionEl } from './dom.js';
import { storeLabel } from './format.js';
import {
  ApiError, SignedOut, TOKEN_PATH, enc, environments, errorBox, explain, forgetEnvironments, knownEnvironments, session,
} from './api.js';
import {
  homeView, missingView, partitionView, storeView, storesView,
} from './views.js';
import { keyView, newKeyView } from './value.js';
import { usageView } from './usage.js';

// ---------------------------------------------------------------- routing

/** `#/o/{org}/e/{env}[/usage | /s/{store}[/p/{partition}[/new | /k/{key}]]]`, each part URI-encoded. */
export function hashFor(r) {
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

export function go(r) {
  location.hash = hashFor(r);
}

let generation = 0;
/** A message to show once on the next page (after a delete, say). */
let flash = null;

/** Shows `text` once, on the next page. */
export function setFlash(text) {
  flash = text;
}

export async function route() {
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
export function focusMain() {
  const heading = mainEl.querySelector('h1');
  if (heading) heading.setAttribute('tabindex', '-1');
  (heading || mainEl).focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

/** Runs an action from a button, showing what happened in `where`; a lost session sends the person to sign in. */
export async function act(button, where, action) {
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
    const env = (knownEnvironments() || []).find((e) => e.organizationId === r.org && e.environmentId === r.env);
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
  const envs = knownEnvironments();
  if (envs && envs.length > 1) {
    // A select with a button, not one that navigates on change: arrow
    // keys move through the options without leaving the page.
    const select = h('select', { 'aria-label': 'Application' },
      envs.map((e) => h('option', { value: hashFor({ org: e.organizationId, env: e.environmentId }), selected: e.organizationId === r.org && e.environmentId === r.env }, e.applicationName)));
    parts.unshift(h('form', { class: 'switch', onsubmit: (e) => { e.preventDefault(); location.hash = select.value; } },
      select, h('button', { type: 'submit', class: 'secondary' }, 'Open')));
  }
  sessionEl.replaceChildren(...parts);
}

export function renderSignIn(message) {
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
  forgetEnvironments();
  session.save({
    token: json.access_token,
    clientId,
    scopes: typeof json.scope === 'string' ? json.scope.split(' ').filter(Boolean) : null,
    // Sign in again a little before the token runs out.
    expiresAt: Date.now() + Math.max(json.expires_in - 30, 1) * 1000,
  });
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
