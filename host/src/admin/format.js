// Numbers, sizes, times and names as the page shows them.

import { h } from './dom.js';

export const DEFAULT_STORE = '_defaultUserObjectStore';
export const DEFAULT_STORE_LABEL = 'DEFAULT_USER_STORE';

export function formatBytes(n) {
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

export function formatCount(n) {
  return n === null || n === undefined ? '—' : Number(n).toLocaleString('en');
}

/** `1 key`, `2 keys`. */
export function plural(n, noun) {
  return `${formatCount(n)} ${noun}${n === 1 ? '' : 's'}`;
}

export function formatSeconds(s) {
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
export function time(iso, { never = 'never', withRelative = false } = {}) {
  if (!iso) return h('span', {}, never);
  const local = new Date(iso).toLocaleString('en-GB', {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
  return h('time', { datetime: iso, title: iso }, withRelative ? `${local} (${relative(iso)})` : local);
}

export function storeLabel(store) {
  return store === DEFAULT_STORE ? DEFAULT_STORE_LABEL : store;
}

export function ttlText(seconds, rolling) {
  if (seconds === null || seconds === undefined) return 'never expires';
  return `${formatSeconds(seconds)}, ${rolling ? 'rolling (reads extend it)' : 'static'}`;
}
