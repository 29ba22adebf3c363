// The usage page: requests per day and month, keys and bytes per store, and
// the application's limits.

import { emptyState, h, svg } from './dom.js';
import { formatBytes, formatCount, storeLabel } from './format.js';
import {
  enc, envPath, query, send,
} from './api.js';
import { envHeader } from './views.js';

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

export async function usageView(r) {
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
