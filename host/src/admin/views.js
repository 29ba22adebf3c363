// The pages that browse: applications, stores, partitions and their keys.

import { announce, emptyState, h } from './dom.js';
import {
  DEFAULT_STORE, formatBytes, formatCount, storeLabel, time, ttlText,
} from './format.js';
import {
  MANAGE_DATA, MANAGE_STORES, METRICS, envPath, environments, keyPath, partitionPath, query, reachable, send, session, storePath,
} from './api.js';
import { go, hashFor, setFlash } from './app.js';
import {
  cell, deleteButton, keyDeletion, nameLink, pagedList, partitionDeletion, storeDeletion, table,
} from './widgets.js';

export function missingView() {
  return h('div', {}, h('h1', {}, 'Page not found'), h('p', {}, 'This address names nothing in the admin UI. ', h('a', { href: '#/' }, 'Go to the applications.')));
}

export async function homeView() {
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

export async function envHeader(r, active) {
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

export async function storesView(r) {
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

export async function storeView(r) {
  const { json: store } = await send(storePath(r));
  const feedback = h('div', { 'aria-live': 'polite' });
  const deleteStore = deleteButton({
    label: 'Delete store…',
    cls: 'danger',
    ask: storeDeletion(r.store, store.keyCount, store.bytesStored),
    path: () => storePath(r),
    feedback,
    done: () => {
      setFlash(`Deleted store ${storeLabel(r.store)}.`);
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

export async function partitionView(r) {
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
      setFlash(`Deleted partition ${r.partition}.`);
      go({ org: r.org, env: r.env, store: r.store });
    },
  });
  return h('div', {},
    h('h1', {}, r.partition),
    h('p', { class: 'sub' }, `Partition of store ${storeLabel(r.store)}`),
    h('div', { class: 'toolbar' },
      session.can(MANAGE_DATA) ? h('a', { class: 'button', href: hashFor({ ...r, view: 'new' }) }, 'New key') : null,
      session.can(MANAGE_STORES) ? deletePartition : null),
    h('p', { class: 'hint spaced' }, 'Keys are listed in byte order of their names. Search by prefix to find one.'),
    searchForm,
    feedback,
    list.element);
}
