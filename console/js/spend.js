// Spend: a group's totals, by model and by key, its timeline, and spend per tag value,
// over a chosen range; each table downloads as CSV (`?format=csv`).

import { get, csv, can, me, query, enc } from './api.js';
import { h, table, usd, num, pageHeader, field, select, iso, download, attempt } from './ui.js';
import { spendChart } from './chart.js';

const state = { group: null, from: '', to: '', grain: 'day', tag: 'team' };

const dateInput = (name, value) => h('input', { name, type: 'date', value });
const day = (d) => iso(d).slice(0, 10);

export async function render(root, rerender) {
  const groups = can('GET /v1/groups') ? (await get('/v1/groups')).data.map((g) => g.id) : me.groups || [];
  if (!state.group || !groups.includes(state.group)) state.group = groups[0];

  const group = select('group', groups, state.group);
  const from = dateInput('from', state.from);
  const to = dateInput('to', state.to);
  const grain = select('grain', ['hour', 'day'], state.grain);
  const tag = h('input', { name: 'tag', type: 'text', value: state.tag, autocomplete: 'off' });
  const form = h('form', { class: 'filters', 'aria-label': 'Spend range' },
    field('Group', group), field('From (UTC day)', from, 'Empty: the budget period'), field('To (UTC day, inclusive)', to),
    field('Timeline grain', grain), field('Tag', tag),
    h('div', { class: 'field' }, h('button', { type: 'submit' }, 'Show')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    Object.assign(state, { group: group.value, from: from.value, to: to.value, grain: grain.value, tag: tag.value.trim() });
    rerender();
  });
  root.append(pageHeader('Spend'), form);
  if (!state.group) return;

  // Dates are whole UTC days; `to` is inclusive in the form, exclusive in the API.
  const range = {};
  if (state.from) range.from = `${state.from}T00:00:00Z`;
  if (state.to) range.to = iso(new Date(Date.parse(`${state.to}T00:00:00Z`) + 86400e3));
  const g = enc(state.group);
  const [total, byModel, byKey] = await Promise.all([
    get(`/v1/spend/groups/${g}${query(range)}`),
    get(`/v1/spend/groups/${g}/by-model${query(range)}`),
    get(`/v1/spend/groups/${g}/by-key${query(range)}`),
  ]);
  // A timeline needs a bounded range: the form's, else the answer's (the budget period).
  const tl = await get(`/v1/spend/groups/${g}/timeline${query({ grain: state.grain, from: range.from || total.from, to: range.to || total.to })}`);
  const byTag = state.tag ? await get(`/v1/spend/tags/${enc(state.tag)}${query(range)}`) : null;

  const csvButton = (label, path, name) => h('button', {
    type: 'button', class: 'small secondary', 'data-csv': name,
    onclick: () => attempt(async () => download(`${name}.csv`, await csv(path))),
  }, label);

  root.append(h('section', { 'aria-labelledby': 'sp-total' },
    h('h2', { id: 'sp-total' }, `${state.group}, ${when(total.from)} to ${when(total.to)}`),
    h('dl', { class: 'totals', 'data-totals': state.group },
      h('div', {}, h('dt', {}, 'Requests'), h('dd', { 'data-field': 'requests' }, num(total.requests))),
      h('div', {}, h('dt', {}, 'Input tokens'), h('dd', { 'data-field': 'input_tokens' }, num(total.input_tokens))),
      h('div', {}, h('dt', {}, 'Output tokens'), h('dd', { 'data-field': 'output_tokens' }, num(total.output_tokens))),
      h('div', {}, h('dt', {}, 'Cost'), h('dd', { 'data-field': 'cost_usd' }, usd(total.cost_usd)))),
    csvButton('Totals as CSV', `/v1/spend/groups/${g}${query(range)}`, `${state.group}-total`)));

  const xs = tl.data.map((b) => Date.parse(b.start) / 1000);
  root.append(h('section', { 'aria-labelledby': 'sp-tl' },
    h('h2', { id: 'sp-tl' }, `Timeline (${state.grain})`),
    spendChart(`Spend of ${state.group}`, xs, [{ label: state.group, values: tl.data.map((b) => b.cost_usd) }]),
    csvButton('Timeline as CSV', `/v1/spend/groups/${g}/timeline${query({ grain: state.grain, from: range.from || total.from, to: range.to || total.to })}`, `${state.group}-timeline`)));

  const cols = (first, key) => [
    { label: first, cell: (r) => (r[key] === null || r[key] === undefined ? '(none)' : r[key]) },
    { label: 'Requests', num: true, cell: (r) => num(r.requests) },
    { label: 'Input tokens', num: true, cell: (r) => num(r.input_tokens) },
    { label: 'Output tokens', num: true, cell: (r) => num(r.output_tokens) },
    { label: 'Cost', num: true, cell: (r) => usd(r.cost_usd) },
  ];
  const section = (id, title, columns, rows, csvPath, name) => h('section', { 'aria-labelledby': id },
    h('h2', { id }, title), table(title, columns, rows, { id: name, empty: 'No spend in this range.' }),
    csvButton(`${title} as CSV`, csvPath, name));
  root.append(
    section('sp-model', 'By model', cols('Model', 'model'), byModel.data, `/v1/spend/groups/${g}/by-model${query(range)}`, 'by-model'),
    section('sp-key', 'By key', cols('Key', 'key_id'), byKey.data, `/v1/spend/groups/${g}/by-key${query(range)}`, 'by-key'));
  if (byTag) {
    root.append(section('sp-tag', `By tag "${state.tag}" (all groups you see)`, cols('Value', 'value'), byTag.data, `/v1/spend/tags/${enc(state.tag)}${query(range)}`, 'by-tag'));
  }
}

function when(s) {
  return s ? day(new Date(s)) + (s.slice(11, 16) !== '00:00' ? ` ${s.slice(11, 16)}Z` : '') : '—';
}
