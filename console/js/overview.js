// Overview: spend over time per group (hour or day grain), requests, refusals and
// guardrail trips per group, budget use, top keys by spend, log sinks' lag and drops.

import { get, can, query, enc } from './api.js';
import { h, table, usd, num, budgetBar, badge, pageHeader, field, select, iso } from './ui.js';
import { spendChart } from './chart.js';

let grain = 'hour';

/** `pii: redact 3; no-secrets: block 1` — a group's guardrail verdicts since start. */
export function tripsText(g) {
  const by = g.guardrail_trips?.by_guardrail || {};
  const parts = Object.entries(by).map(([id, actions]) => `${id}: ${Object.entries(actions).map(([a, n]) => `${a} ${n}`).join(', ')}`);
  return parts.length ? parts.join('; ') : 'none';
}

export async function render(root, rerender) {
  const grainSel = select('grain', [['hour', 'hourly, last 24 hours'], ['day', 'daily, last 30 days']], grain);
  grainSel.addEventListener('change', () => { grain = grainSel.value; rerender(); });
  root.append(pageHeader('Overview', h('div', { class: 'controls' }, field('Chart grain', grainSel))));

  const groups = (await get('/v1/groups')).data;
  const spendOk = can('GET /v1/spend/groups/{id}');
  const now = new Date();
  const span = grain === 'hour' ? 24 * 3600e3 : 30 * 86400e3;
  const range = { from: iso(new Date(now.getTime() - span)), to: iso(new Date(now.getTime() + 3600e3)) };

  const [totals, timelines, byKey] = spendOk
    ? await Promise.all([
      Promise.all(groups.map((g) => get(`/v1/spend/groups/${enc(g.id)}`))),
      Promise.all(groups.map((g) => get(`/v1/spend/groups/${enc(g.id)}/timeline${query({ grain, ...range })}`))),
      Promise.all(groups.map((g) => get(`/v1/spend/groups/${enc(g.id)}/by-key`))),
    ])
    : [[], [], []];

  if (spendOk && timelines.length) {
    const xs = timelines[0].data.map((b) => Date.parse(b.start) / 1000);
    const series = groups.map((g, i) => ({ label: g.id, values: timelines[i].data.map((b) => b.cost_usd) }));
    root.append(h('section', { 'aria-labelledby': 'ov-chart' },
      h('h2', { id: 'ov-chart' }, `Spend per group, ${grain === 'hour' ? 'per hour' : 'per day'}`),
      spendChart('Spend per group', xs, series)));
  }

  root.append(h('section', { 'aria-labelledby': 'ov-groups' },
    h('h2', { id: 'ov-groups' }, 'Groups this budget period'),
    table('Requests, refusals and budget use per group', [
      { label: 'Group', cell: (g) => g.id },
      { label: 'State', cell: (g) => badge(g.state) },
      { label: 'Requests', num: true, key: 'requests', cell: (g) => num(totals[groups.indexOf(g)]?.requests) },
      { label: 'Refusals (since start)', num: true, key: 'refusals', cell: (g) => num(g.refusals?.total) },
      { label: 'Guardrail trips (since start)', num: true, key: 'guardrail_trips', cell: (g) => h('span', { title: tripsText(g) }, num(g.guardrail_trips?.total)) },
      { label: 'Spend', num: true, key: 'spend', cell: (g) => usd(g.spend_usd) },
      { label: 'Budget use', cell: (g) => budgetBar(g.spend_usd, g.budget_usd) },
    ], groups, { id: 'overview-groups', rowAttrs: (g) => ({ 'data-group': g.id }) })));

  if (can('GET /v1/log_sinks')) {
    // Shared by every group: a scoped token is refused, and then the section is left out.
    const sinks = await get('/v1/log_sinks').then((r) => r.data, () => []);
    if (sinks.length) {
      root.append(h('section', { 'aria-labelledby': 'ov-sinks' },
        h('h2', { id: 'ov-sinks' }, 'Log sinks'),
        table('Log export: lag and drops per sink', [
          { label: 'Sink', cell: (s) => s.id },
          { label: 'Kind', cell: (s) => s.kind },
          { label: 'Lag (s)', num: true, key: 'lag_seconds', cell: (s) => num(Math.round(s.lag_seconds)) },
          { label: 'Spool', num: true, key: 'spool_bytes', cell: (s) => `${num(Math.ceil(s.spool_bytes / 1024))} KiB` },
          { label: 'Delivered (since start)', num: true, key: 'delivered', cell: (s) => num(s.delivered) },
          { label: 'Dropped (since start)', num: true, key: 'dropped', cell: (s) => (s.dropped ? badge(`${num(s.dropped)} dropped`) : num(0)) },
        ], sinks, { id: 'log-sinks', rowAttrs: (s) => ({ 'data-sink': s.id }) })));
    }
  }

  if (spendOk) {
    const top = byKey.flatMap((r, i) => r.data.map((k) => ({ ...k, group: groups[i].id })))
      .sort((a, b) => b.cost_usd - a.cost_usd).slice(0, 10);
    root.append(h('section', { 'aria-labelledby': 'ov-top' },
      h('h2', { id: 'ov-top' }, 'Top keys by spend this period'),
      table('Top keys by spend', [
        { label: 'Key', cell: (k) => k.key_id },
        { label: 'Group', cell: (k) => k.group },
        { label: 'Requests', num: true, cell: (k) => num(k.requests) },
        { label: 'Spend', num: true, cell: (k) => usd(k.cost_usd) },
      ], top, { id: 'top-keys', empty: 'No spend yet.' })));
  }
}
