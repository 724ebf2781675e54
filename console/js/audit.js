// Audit: the events, newest first, filtered and paginated; the hash-chain check.

import { get, can, query } from './api.js';
import { h, table, when, pageHeader, field, attempt } from './ui.js';

const state = { filters: {}, cursors: [null] };

export async function render(root, rerender) {
  const f = state.filters;
  const inputs = Object.fromEntries(['group', 'key', 'actor', 'type', 'since', 'until'].map((n) => [n, h('input', {
    name: n, type: 'text', autocomplete: 'off', value: f[n] || '',
    placeholder: { type: 'e.g. key.revoked', since: 'RFC 3339, e.g. 2024-05-01T00:00:00Z', key: 'key_…', actor: 'root or tok_…' }[n] || null,
  })]));
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter audit events' },
    field('Group', inputs.group), field('Key id', inputs.key), field('Actor', inputs.actor), field('Type', inputs.type),
    field('Since', inputs.since), field('Until', inputs.until),
    h('div', { class: 'field' }, h('button', { type: 'submit' }, 'Apply')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.filters = Object.fromEntries(Object.entries(inputs).map(([k, el]) => [k, el.value.trim()]));
    state.cursors = [null];
    rerender();
  });

  const result = h('p', { role: 'status', class: 'chain' });
  const tools = can('GET /v1/audit/verify')
    ? h('div', { class: 'row' }, h('button', {
      type: 'button', 'data-action': 'verify',
      onclick: () => attempt(async () => {
        const v = await get('/v1/audit/verify');
        result.className = `chain ${v.ok ? 'ok' : 'bad'}`;
        result.textContent = v.ok
          ? `Chain intact: ${v.events} events checked.`
          : `Chain broken at event ${v.first_bad} (${v.events} events checked).`;
      }),
    }, 'Check the hash chain'), result)
    : null;
  root.append(pageHeader('Audit', tools), form);

  const cursor = state.cursors[state.cursors.length - 1];
  const page = await get(`/v1/audit${query({ ...state.filters, limit: 50, cursor })}`);
  root.append(table('Audit events, newest first', [
    { label: 'At', cell: (e) => when(e.at) },
    { label: 'Type', cell: (e) => h('code', {}, e.type) },
    { label: 'Actor', cell: (e) => e.actor },
    { label: 'Group', cell: (e) => e.group || '—' },
    { label: 'Key', cell: (e) => e.key_id || '—' },
    { label: 'Detail', cell: (e) => detail(e) },
  ], page.data, { id: 'audit', empty: 'No event matches.' }));
  root.append(h('nav', { class: 'row pager', 'aria-label': 'Pages of events' },
    h('button', { type: 'button', class: 'secondary', disabled: state.cursors.length < 2, onclick: () => { state.cursors.pop(); rerender(); } }, 'Newer'),
    h('span', { class: 'muted' }, `page ${state.cursors.length}`),
    h('button', { type: 'button', class: 'secondary', disabled: !page.next_cursor, onclick: () => { state.cursors.push(page.next_cursor); rerender(); } }, 'Older')));
}

function detail(e) {
  const d = { ...(e.detail || {}) };
  for (const k of ['before', 'after']) if (e[k] !== undefined) d[k] = e[k];
  const text = JSON.stringify(d);
  if (text === '{}') return '—';
  return h('details', {}, h('summary', {}, text.length > 60 ? `${text.slice(0, 60)}…` : text), h('pre', {}, JSON.stringify(d, null, 2)));
}
