// Invoices: a month's invoices, one per `invoice_to` — the totals and the line items per
// group and model with the group's markup — downloadable as CSV (`?format=csv`), all of
// them or one invoice's rows.

import { get, csv, query } from './api.js';
import { h, table, usd, num, pageHeader, field, download, attempt } from './ui.js';

const state = { period: '' };

/** The current month in UTC, as `YYYY-MM` (the API's periods are UTC months). */
const thisMonth = () => new Date().toISOString().slice(0, 7);

/** A CSV cell as the API writes it (quoted when it holds a comma, quote or newline). */
const cell = (s) => (/[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

/** The header and the rows of one invoice from the whole period's CSV. */
function onlyInvoice(text, to) {
  const [header, ...rows] = text.split('\n');
  const prefix = `${cell(to)},`;
  return [header, ...rows.filter((r) => r.startsWith(prefix)), ''].join('\n');
}

const safeName = (s) => s.replace(/[^A-Za-z0-9._-]+/g, '_');

export async function render(root, rerender) {
  if (!state.period) state.period = thisMonth();
  const period = h('input', { name: 'period', type: 'month', value: state.period, required: true, pattern: '[0-9]{4}-[0-9]{2}' });
  const form = h('form', { class: 'filters', 'aria-label': 'Invoice period' },
    field('Month (UTC)', period, 'YYYY-MM'),
    h('div', { class: 'field' }, h('button', { type: 'submit' }, 'Show')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!period.value) return;
    state.period = period.value;
    rerender();
  });
  root.append(pageHeader('Invoices'), form);

  const path = `/v1/invoices${query({ period: state.period })}`;
  const list = await get(path);
  const csvButton = (label, name, pick) => h('button', {
    type: 'button', class: 'small secondary', 'data-csv': name,
    onclick: () => attempt(async () => download(`${safeName(name)}.csv`, pick(await csv(path)))),
  }, label);

  root.append(h('p', { class: 'muted' },
    `${list.period}: ${list.from.slice(0, 10)} to ${list.to.slice(0, 10)} (exclusive), UTC. `
    + 'Each line is a group\'s usage of one model; its markup is the group\'s markup_pct of the cost, '
    + 'rounded half up to the micro-dollar, and the invoice totals are the sums of the lines.'),
  csvButton('All invoices as CSV', `invoices-${list.period}`, (t) => t));
  if (!list.data.length) {
    root.append(h('p', { class: 'empty', 'data-empty': 'invoices' }, `No usage in ${list.period}.`));
    return;
  }
  const columns = [
    { label: 'Group', key: 'group', cell: (l) => l.group },
    { label: 'Model', key: 'model', cell: (l) => l.model },
    { label: 'Requests', key: 'requests', num: true, cell: (l) => num(l.requests) },
    { label: 'Input tokens', key: 'input_tokens', num: true, cell: (l) => num(l.input_tokens) },
    { label: 'of which cached', key: 'cached_input_tokens', num: true, cell: (l) => num(l.cached_input_tokens) },
    { label: 'Output tokens', key: 'output_tokens', num: true, cell: (l) => num(l.output_tokens) },
    { label: 'Cost', key: 'cost_usd', num: true, cell: (l) => usd(l.cost_usd) },
    { label: 'Markup %', key: 'markup_pct', num: true, cell: (l) => `${l.markup_pct}%` },
    { label: 'Markup', key: 'markup_usd', num: true, cell: (l) => usd(l.markup_usd) },
    { label: 'Total', key: 'total_usd', num: true, cell: (l) => usd(l.total_usd) },
  ];
  list.data.forEach((inv, i) => {
    const id = `inv-${i}`;
    root.append(h('section', { 'aria-labelledby': id, 'data-invoice': inv.invoice_to },
      h('h2', { id }, `${inv.invoice_to}`, h('span', { class: 'muted' }, ` — ${inv.groups.join(', ')}`)),
      h('dl', { class: 'totals' },
        h('div', {}, h('dt', {}, 'Subtotal'), h('dd', { 'data-field': 'subtotal_usd' }, usd(inv.subtotal_usd))),
        h('div', {}, h('dt', {}, 'Markup'), h('dd', { 'data-field': 'markup_usd' }, usd(inv.markup_usd))),
        h('div', {}, h('dt', {}, 'Total'), h('dd', { 'data-field': 'total_usd' }, usd(inv.total_usd)))),
      table(`Invoice to ${inv.invoice_to}, ${list.period}`, columns, inv.lines, { id: `invoice-${i}` }),
      csvButton(`${inv.invoice_to} as CSV`, `invoice-${inv.invoice_to}-${list.period}`, (t) => onlyInvoice(t, inv.invoice_to))));
  });
}
