// Pieces several views share: the confirmation before a deletion, delete
// buttons, paged lists and tables.

import { emptyState, h, loading } from './dom.js';
import { formatBytes, plural, storeLabel } from './format.js';
import { SignedOut, errorBox, reachable, send, session } from './api.js';
import { act, hashFor, renderSignIn } from './app.js';

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
export function deleteButton({ label, ariaLabel = null, cls, ask, path, feedback, done }) {
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
export function storeDeletion(store, keyCount, bytes, whose = '') {
  const name = storeLabel(store);
  return [`Delete store ${name}?`,
    `This deletes the store “${name}”${whose} with all its partitions and its ${plural(keyCount, 'key')} (${formatBytes(bytes)}). It cannot be undone.`,
    'Delete store'];
}

export function partitionDeletion(r, partition) {
  return [`Delete partition ${partition}?`,
    `This deletes the partition “${partition}” of store “${storeLabel(r.store)}” and every key in it. It cannot be undone.`,
    'Delete partition'];
}

export function keyDeletion(r, key, size) {
  return [`Delete key ${key}?`,
    `This deletes the key “${key}” (${formatBytes(size)}) from partition “${r.partition}” of store “${storeLabel(r.store)}”. It cannot be undone.`,
    'Delete key'];
}

// ---------------------------------------------------------------- paging

/** Where each listing was, by page address, so that Back returns to the same page. */
const pagerMemory = new Map();
session.forgetters.push(() => pagerMemory.clear());

/**
 * A paged list: `load(token)` gives `{values, nextPageToken}`; `render(values)`
 * draws a page. Previous pages are remembered by their tokens.
 */
export function pagedList({ load, render, empty, noun }) {
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

export function table(columns, rows, label) {
  return h('div', { class: 'table-wrap' }, h('table', { class: 'stack', 'aria-label': label },
    h('thead', {}, h('tr', {}, columns.map(([name, cls]) => h('th', { scope: 'col', class: cls }, name)))),
    h('tbody', {}, rows)));
}

/** A link to `target` named `name`, or just the name with a note when a browser cannot reach it. */
export function nameLink(name, label, target) {
  return reachable(name)
    ? h('a', { href: hashFor(target) }, label)
    : h('span', { title: 'A browser cannot send this name in a URL path' }, label, h('span', { class: 'badge' }, 'not reachable from a browser'));
}

/** A table cell; its label heads it when the table is stacked at phone width. */
export function cell(label, content, cls) {
  return h('td', { 'data-label': label || null, class: cls }, content);
}
