// Drift: reconciliation with the providers' usage APIs — per UTC day, provider and model,
// the provider's tokens next to the gateway's and the difference; rows beyond the
// provider's drift alert are highlighted. Admins may run it now; the latest runs (and why
// one failed) are listed under the table.

import { get, post, can, query } from './api.js';
import { h, table, num, when, pageHeader, field, attempt, toast } from './ui.js';

const state = { provider: '', from: '', to: '' };

const pct = (d) => (d === null || d === undefined ? '∞' : `${d > 0 ? '+' : ''}${Number(d).toFixed(2)} %`);

export async function render(root, rerender) {
  const inputs = {
    provider: h('input', { name: 'provider', type: 'text', autocomplete: 'off', value: state.provider, placeholder: 'all' }),
    from: h('input', { name: 'from', type: 'date', value: state.from }),
    to: h('input', { name: 'to', type: 'date', value: state.to }),
  };
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter reconciliation rows' },
    field('Provider', inputs.provider), field('From', inputs.from), field('To', inputs.to),
    h('div', { class: 'field' }, h('button', { type: 'submit' }, 'Apply')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    for (const k of Object.keys(inputs)) state[k] = inputs[k].value.trim();
    rerender();
  });
  const tools = can('POST /v1/reconciliation/run')
    ? h('button', {
      type: 'button', 'data-action': 'reconcile',
      onclick: () => attempt(async () => {
        const run = await post(`/v1/reconciliation/run${query({ from: state.from, to: state.to })}`);
        toast(run.ok ? 'Reconciliation done' : `Run ${run.id}: some providers could not be read`, run.ok ? 'ok' : 'error');
        rerender();
      }),
    }, 'Reconcile now')
    : null;
  root.append(pageHeader('Drift', tools), form);

  const r = await get(`/v1/reconciliation${query({ provider: state.provider, from: state.from, to: state.to })}`);
  root.append(h('p', { class: 'muted' },
    `${r.from} to ${r.to} (UTC days). Difference = (provider − gateway) / gateway on input + output tokens; highlighted beyond the provider's drift alert.`));
  root.append(table('Provider tokens against the gateway\'s, per day and model', [
    { label: 'Day', cell: (d) => d.day },
    { label: 'Provider', cell: (d) => d.provider },
    { label: 'Model', cell: (d) => h('code', {}, d.model) },
    { label: 'Provider tokens', num: true, key: 'provider_tokens', cell: (d) => num(d.provider_tokens) },
    { label: 'Gateway tokens', num: true, key: 'gateway_tokens', cell: (d) => num(d.gateway_tokens) },
    { label: 'Diff', num: true, key: 'diff_pct', cell: (d) => h('span', { class: d.drift ? 'bad' : null }, pct(d.diff_pct)) },
    { label: 'Alert at', num: true, cell: (d) => `± ${d.drift_alert} %` },
  ], r.data, {
    id: 'drift',
    empty: 'No reconciled day yet: providers need usage_api in the policy, and a run (daily, or "Reconcile now").',
    rowAttrs: (d) => ({ class: d.drift ? 'drift' : null, 'data-drift': d.drift ? 'true' : 'false' }),
  }));
  root.append(table('Latest runs, newest first', [
    { label: 'At', cell: (x) => when(x.at) },
    { label: 'Trigger', cell: (x) => x.trigger },
    { label: 'Days', cell: (x) => (x.from === x.to ? x.from : `${x.from} – ${x.to}`) },
    { label: 'Result', cell: (x) => h('ul', { class: 'plain' }, x.providers.map((p) => h('li', { class: p.ok ? null : 'bad' },
      p.ok ? `${p.provider}: ${p.rows} rows, ${p.alerts} alerts` : `${p.provider}: failed — ${p.error}`))) },
  ], r.runs, { id: 'drift-runs', empty: 'No run yet.' }));
}
