// "Edit all keys" of a group: one PATCH /v1/groups/{id}/keys with the fields filled in
// (tags, lifetime, models, rpm, budget), and its answer: keys changed, keys skipped with
// the reason (docs/admin-api.md "Bulk key updates"). Offered on the Groups page and on
// the Keys page while it is filtered to one group.

import { api, can, enc } from './api.js';
import { h, field, modal, toast } from './ui.js';

const input = (name, attrs = {}) => h('input', { name, type: 'text', autocomplete: 'off', ...attrs });

function parseTags(s) {
  const out = {};
  for (const part of s.split(',').map((x) => x.trim()).filter(Boolean)) {
    const i = part.indexOf('=');
    if (i < 1) throw Object.assign(new Error(`tag "${part}": write name=value`), { param: 'tags' });
    out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

export const mayEditAll = () => can('PATCH /v1/groups/{id}/keys');

/** Opens the dialog; resolves with the API's answer, or undefined when cancelled. */
export async function editAllKeys(group) {
  const f = {
    tags: input('tags', { placeholder: 'team=search, cost_center=cc-1' }),
    ttl: input('ttl', { placeholder: 'e.g. 30d' }),
    models: input('models', { placeholder: 'gpt-4o*, claude-*' }),
    rpm: input('rpm', { type: 'number', min: '1', step: '1' }),
    budget_usd: input('budget_usd', { type: 'number', min: '0', step: 'any' }),
  };
  const error = h('p', { class: 'error', role: 'alert', 'data-error-for': 'bulk' });
  const form = h('div', { class: 'form-grid', 'data-form': 'edit-all-keys' },
    field('Tags (replace)', f.tags, 'name=value, comma separated'),
    field('New lifetime from now (ttl)', f.ttl, 'Sets expires_at on every key'),
    field('Models', f.models, 'Comma separated, * wildcards'),
    field('Requests per minute', f.rpm),
    field('Budget (USD)', f.budget_usd));
  let result;
  await modal(`Edit all keys of ${group}`, [
    h('p', { class: 'muted' }, 'Only the fields you fill are changed, on every API key of the group. A key the change would make looser than its group or org is skipped, with the reason.'),
    form, error,
  ], [
    { label: 'Cancel', value: 'cancel', class: 'secondary' },
    {
      label: 'Apply to all',
      value: 'ok',
      onclick: async () => {
        try {
          const body = {};
          const text = (k) => f[k].value.trim();
          if (text('tags')) body.tags = parseTags(text('tags'));
          if (text('ttl')) body.ttl = text('ttl');
          if (text('models')) body.models = text('models').split(',').map((x) => x.trim()).filter(Boolean);
          if (text('rpm')) body.rpm = Number(text('rpm'));
          if (text('budget_usd')) body.budget_usd = Number(text('budget_usd'));
          result = await api('PATCH', `/v1/groups/${enc(group)}/keys`, body);
          return true;
        } catch (e) {
          error.textContent = e.param ? `${e.param}: ${e.message}` : e.message;
          return false;
        }
      },
    },
  ], { wide: true });
  if (!result) return undefined;
  const skipped = result.skipped || [];
  if (skipped.length) {
    await modal(`${group}: ${result.affected} keys changed, ${skipped.length} skipped`, [
      h('ul', { 'data-field': 'skipped' }, skipped.map((s) => h('li', { 'data-key': s.id }, h('code', {}, s.id), ` ${s.reason}`))),
    ], [{ label: 'Done', value: 'ok' }]);
  } else {
    toast(`${group}: ${result.affected} keys changed.`);
  }
  return result;
}
