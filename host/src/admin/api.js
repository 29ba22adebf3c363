// The REST API as the page uses it: the session and its token, calls and
// their errors in words, and the paths of what the page shows.

import { h } from './dom.js';

export const TOKEN_PATH = '/accounts/api/v2/oauth2/token';
// The scopes that show the controls which need them.
export const MANAGE_STORES = 'manage:store';
export const MANAGE_DATA = 'manage:store_data';
export const METRICS = 'read:store_metrics';

export const session = {
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
    for (const forget of this.forgetters) forget();
  },
  /** What else to forget when a session ends (remembered pages, say). */
  forgetters: [],
  /** Whether the token carries `scope` (older servers do not say: assume yes). */
  can(scope) {
    const scopes = this.current && this.current.scopes;
    return !scopes || scopes.includes(scope);
  },
};

/** Thrown when a call needs a session and there is none (or it ended). */
export class SignedOut extends Error {
  constructor(message) {
    super(message || 'Sign in to continue.');
  }
}

/** An answer other than 2xx, or no answer at all (status 0). */
export class ApiError extends Error {
  /** `code` is the object-store error's name (`quota-exceeded`, ...), if it is one. */
  constructor(status, message, retryAfter, code) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
    this.code = code;
  }
}

/** A mistake in a form, caught before anything is sent. */
export class FormError extends Error {}

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
export function exactNumber(text) {
  return typeof JSON.rawJSON === 'function' ? JSON.rawJSON(text) : Number(text);
}

/** JSON's number grammar: no hex, no leading `+`, no `Infinity`. */
export const NUMBER_TEXT = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;

export async function send(path, { method = 'GET', body, headers = {} } = {}) {
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
export function explain(err) {
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

export function errorBox(err, { withTitle = true } = {}) {
  const [title, detail] = explain(err);
  return h('div', { class: 'error', role: 'alert' }, withTitle ? h('strong', {}, title) : null, detail);
}

export const enc = encodeURIComponent;

/**
 * A name as one segment of an API path. Browsers resolve `.` and `..` in
 * paths (even as `%2E`) before sending, so such names cannot be reached.
 */
export function reachable(name) {
  return name !== '.' && name !== '..';
}

function seg(name) {
  if (!reachable(name)) {
    throw new Unreachable(`A browser cannot send the name “${name}” in a URL path, so this page cannot open or change it. The application itself, or a client that sends paths as they are (curl --path-as-is), can.`);
  }
  return encodeURIComponent(name);
}

export function envPath(org, env) {
  return `/api/v1/organizations/${seg(org)}/environments/${seg(env)}`;
}

export function storePath(r, store = r.store) {
  return `${envPath(r.org, r.env)}/stores/${seg(store)}`;
}

export function partitionPath(r, partition = r.partition) {
  return `${storePath(r)}/partitions/${seg(partition)}`;
}

export function keyPath(r, key = r.key) {
  return `${partitionPath(r)}/keys/${seg(key)}`;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : '';
}

let environmentsCache = null;

/** The environments the session may use, asked once per session. */
export async function environments() {
  if (!environmentsCache) environmentsCache = (await send('/api/v1/environments')).json.values;
  return environmentsCache;
}

/** The environments, if they were asked for already. */
export function knownEnvironments() {
  return environmentsCache;
}

/** Asks for the environments again next time (after signing in). */
export function forgetEnvironments() {
  environmentsCache = null;
}
