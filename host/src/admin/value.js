// One key: its value shown as text, JSON or bytes, and the forms that
// edit it, set its TTL or create a new key.

import { h } from './dom.js';
import {
  formatBytes, formatCount, storeLabel, time, ttlText,
} from './format.js';
import {
  ApiError, FormError, MANAGE_DATA, NUMBER_TEXT, errorBox, exactNumber, keyPath, send, session,
} from './api.js';
import {
  act, go, hashFor, route, setFlash,
} from './app.js';
import { deleteButton, keyDeletion } from './widgets.js';

/** The server's default key length limit; the server has the last word. */
const MAX_KEY_BYTES = 1024;

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

export async function keyView(r) {
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
      setFlash(done);
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
      setFlash(`Deleted key ${r.key}.`);
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

export async function newKeyView(r) {
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
        setFlash(`Created key ${name}.`);
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
