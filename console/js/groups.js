// Groups: runtime state (pause / resume / quarantine, each confirmed), limits, budget
// bars, key counts, guardrails and their trips, and the bulk key actions of a group.

import { get, post, can, enc } from './api.js';
import { h, table, usd, num, budgetBar, badge, pageHeader, confirm, attempt } from './ui.js';
import { tripsText } from './overview.js';
import { editAllKeys, mayEditAll } from './bulk.js';

const LIMITS = ['rpm', 'rph', 'rpd', 'tpm', 'tpd', 'max_parallel', 'max_tokens'];

function limitsText(l) {
  const parts = LIMITS.filter((k) => l && l[k] != null).map((k) => `${k} ${num(l[k])}`);
  return parts.length ? parts.join(', ') : 'none';
}

export async function render(root, rerender) {
  const groups = (await get('/v1/groups')).data;
  root.append(pageHeader('Groups'));

  const action = (g, verb, label, message, danger) => h('button', {
    type: 'button', class: danger ? 'danger small' : 'secondary small', 'data-action': verb, 'data-group': g.id,
    onclick: async () => {
      if (!(await confirm(`${label} ${g.id}?`, message, label, danger))) return;
      const ok = await attempt(() => post(`/v1/groups/${enc(g.id)}/${verb}`), `${g.id}: ${label.toLowerCase()}: done.`);
      if (ok !== undefined) rerender();
    },
  }, label);

  const stateActions = (g) => {
    if (!can('POST /v1/groups/{id}/pause')) return h('span', { class: 'muted' }, 'read only');
    const out = [];
    if (g.state !== 'paused') out.push(action(g, 'pause', 'Pause', 'Every key of the group gets 403 group_paused from the next request.', true));
    if (g.state !== 'active') out.push(action(g, 'resume', 'Resume', 'The group serves again from the next request.'));
    if (g.state !== 'quarantined') out.push(action(g, 'quarantine', 'Quarantine', 'The group is refused with 403 group_quarantined from the next request.', true));
    return h('div', { class: 'row' }, out);
  };

  const bulkActions = (g) => {
    if (!can('POST /v1/groups/{id}/keys/disable')) return null;
    const edit = mayEditAll() ? h('button', {
      type: 'button', class: 'secondary small', 'data-action': 'keys/edit', 'data-group': g.id,
      onclick: async () => { if (await editAllKeys(g.id)) rerender(); },
    }, 'Edit all keys') : null;
    return h('div', { class: 'row' },
      edit,
      action(g, 'keys/disable', 'Disable all keys', 'Every API key of the group is disabled (file keys are skipped).'),
      action(g, 'keys/enable', 'Enable all keys', 'Every disabled API key of the group is enabled again.'),
      action(g, 'keys/revoke', 'Revoke all keys', 'Every API key of the group is revoked, permanently.', true));
  };

  const columns = [
    { label: 'Group', cell: (g) => h('span', {}, h('strong', {}, g.id), g.name && g.name !== g.id ? h('div', { class: 'muted' }, g.name) : null) },
    { label: 'Org', cell: (g) => g.org },
    { label: 'State', key: 'state', cell: (g) => h('span', {}, badge(g.state), g.state_source === 'api' ? h('div', { class: 'muted' }, 'set through the API') : null) },
    { label: 'Keys', num: true, cell: (g) => `${num(g.keys?.active)} active / ${num(g.keys?.total)}` },
    { label: 'Limits', cell: (g) => limitsText(g.limits) },
    {
      label: 'Preset / mTLS',
      cell: (g) => h('span', {},
        h('span', { 'data-field': 'preset', title: (g.preset_fields || []).join(', ') }, g.preset ? `preset ${g.preset}` : 'no preset'),
        h('div', { class: 'muted', 'data-field': 'require_client_cert' }, g.require_client_cert ? 'client certificate required' : '')),
    },
    { label: 'Guardrails', cell: (g) => h('span', { 'data-field': 'guardrails' }, (g.guardrails || []).length ? g.guardrails.join(', ') : 'none') },
    { label: 'Guardrail trips (since start)', cell: (g) => h('span', { 'data-field': 'guardrail_trips' }, h('strong', {}, num(g.guardrail_trips?.total)), h('div', { class: 'muted' }, tripsText(g))) },
    { label: 'Spend this period', num: true, cell: (g) => usd(g.spend_usd) },
    { label: 'Budget', cell: (g) => budgetBar(g.spend_usd, g.budget_usd) },
    { label: 'State actions', cell: stateActions },
  ];
  if (can('POST /v1/groups/{id}/keys/disable')) columns.push({ label: 'Bulk key actions', cell: bulkActions });
  root.append(table('Groups, their state, limits and budgets', columns, groups, { id: 'groups', rowAttrs: (g) => ({ 'data-group': g.id }) }));
}
