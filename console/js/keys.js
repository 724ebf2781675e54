// Keys: the list with filters, search and cursor pagination; create (the raw key shown
// once), batch create (raw keys as a CSV download), edit, disable / enable, regenerate,
// move, revoke. Buttons appear only for what the token's role may call.

import { get, api, post, can, me, query, enc } from './api.js';
import {
  h, clear, table, usd, when, badge, pageHeader, field, select, modal, confirm, showOnce,
  attempt, download, toast,
} from './ui.js';

const state = { filters: {}, cursors: [null], limit: 25 };

/** `a=1, b=2` ⇄ `{a: '1', b: '2'}` */
const tagsText = (t) => Object.entries(t || {}).map(([k, v]) => `${k}=${v}`).join(', ');
function parseTags(s) {
  const out = {};
  for (const part of s.split(',').map((x) => x.trim()).filter(Boolean)) {
    const i = part.indexOf('=');
    if (i < 1) throw new Error(`tag "${part}": write name=value`);
    out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

async function groupIds() {
  if (can('GET /v1/groups')) return (await get('/v1/groups')).data.map((g) => g.id);
  return me.groups || [];
}

const input = (name, attrs = {}) => h('input', { name, type: 'text', autocomplete: 'off', ...attrs });

/** The fields of create and edit; returns `{el, read()}` giving the body. */
function keyForm(groups, key) {
  const f = {
    name: input('name', { required: true, value: key ? key.name : '' }),
    owner: input('owner', { value: key ? key.owner || '' : (me.role === 'developer' ? me.owner : '') }),
    ttl: input('ttl', { placeholder: 'e.g. 30d' }),
    budget_usd: input('budget_usd', { type: 'number', min: '0', step: 'any', value: key?.limits?.budget_usd ?? '' }),
    rpm: input('rpm', { type: 'number', min: '1', step: '1', value: key?.limits?.rpm ?? '' }),
    tags: input('tags', { placeholder: 'team=search, cost_center=cc-1', value: key ? tagsText(key.tags) : '' }),
  };
  // A token that cannot list groups (a developer scoped to every group) types the id.
  const group = key ? null : groups.length ? select('group', groups, groups[0]) : input('group', { required: true });
  const el = h('div', { class: 'form-grid' },
    field('Name', f.name),
    group ? field('Group', group) : null,
    field('Owner', f.owner),
    field(key ? 'New lifetime from now (ttl)' : 'Lifetime (ttl)', f.ttl, 'Empty: the group\'s key_ttl'),
    field('Budget (USD)', f.budget_usd),
    field('Requests per minute', f.rpm),
    field('Tags', f.tags, 'name=value, comma separated'));
  const read = () => {
    const body = {};
    const text = (k) => f[k].value.trim();
    const number = (k) => (text(k) === '' ? null : Number(text(k)));
    if (!key) {
      body.name = text('name');
      body.group = group.value;
      if (text('owner')) body.owner = text('owner');
      if (text('ttl')) body.ttl = text('ttl');
      if (number('budget_usd') !== null) body.budget_usd = number('budget_usd');
      if (number('rpm') !== null) body.rpm = number('rpm');
      if (text('tags')) body.tags = parseTags(text('tags'));
      return body;
    }
    // An edit sends only what changed; an emptied field is a JSON null (cleared).
    if (text('name') !== key.name) body.name = text('name');
    if (text('owner') !== (key.owner || '')) body.owner = text('owner') || null;
    if (text('ttl')) body.ttl = text('ttl');
    if (number('budget_usd') !== (key.limits?.budget_usd ?? null)) body.budget_usd = number('budget_usd');
    if (number('rpm') !== (key.limits?.rpm ?? null)) body.rpm = number('rpm');
    if (text('tags') !== tagsText(key.tags)) body.tags = text('tags') ? parseTags(text('tags')) : null;
    return body;
  };
  return { el, read };
}

/** A dialog around a form; resolves with the API answer, or undefined when cancelled. */
async function formDialog(title, form, submit, label) {
  let result;
  const error = h('p', { class: 'error', role: 'alert' });
  await modal(title, [form.el, error], [
    { label: 'Cancel', value: 'cancel', class: 'secondary' },
    {
      label,
      value: 'ok',
      onclick: async () => {
        try {
          result = await submit(form.read());
          return true;
        } catch (e) {
          error.textContent = e.param ? `${e.param}: ${e.message}` : e.message;
          return false;
        }
      },
    },
  ]);
  return result;
}

export async function render(root) {
  const groups = await groupIds();
  const rerender = () => render(clear(root));
  const cursor = state.cursors[state.cursors.length - 1];
  const page = await get(`/v1/keys${query({ ...state.filters, limit: state.limit, cursor })}`);

  const tools = [];
  if (can('POST /v1/keys')) {
    tools.push(h('button', {
      type: 'button', 'data-action': 'create',
      onclick: async () => {
        const created = await formDialog('Create a key', keyForm(groups), (b) => post('/v1/keys', b), 'Create');
        if (!created) return;
        await showOnce(`Key "${created.name}" created`, 'API key', created.key);
        rerender();
      },
    }, 'Create key'));
  }
  if (can('POST /v1/keys/batch')) tools.push(h('button', { type: 'button', class: 'secondary', 'data-action': 'batch', onclick: () => batch(groups).then(rerender) }, 'Batch create'));
  root.append(pageHeader('Keys', h('div', { class: 'row' }, tools)));
  root.append(filters(groups, rerender));
  if (state.filters.group && can('POST /v1/groups/{id}/keys/disable')) root.append(bulkBar(state.filters.group, rerender));

  const columns = [
    { label: 'Name', key: 'name', cell: (k) => h('span', {}, h('strong', {}, k.name || k.id), k.name ? h('div', { class: 'muted mono' }, k.id) : null) },
    { label: 'Prefix', cell: (k) => h('code', {}, k.prefix) },
    { label: 'Group', cell: (k) => k.group },
    { label: 'Owner', cell: (k) => k.owner || '—' },
    { label: 'Status', key: 'status', cell: (k) => h('span', {}, badge(k.status), k.source === 'config' ? h('div', { class: 'muted' }, 'file key') : null) },
    { label: 'Expires', cell: (k) => when(k.expires_at) },
    { label: 'Last used', cell: (k) => when(k.last_used_at) },
    { label: 'Tags', key: 'tags', cell: (k) => tagsText(k.tags) || '—' },
    { label: 'Spend', num: true, cell: (k) => usd(k.spend_usd) },
    { label: 'Budget', num: true, cell: (k) => (k.budget_usd == null ? '—' : usd(k.budget_usd)) },
    { label: 'Actions', cell: (k) => actions(k, groups, rerender) },
  ];
  root.append(table('API and file keys', columns, page.data, { id: 'keys', rowAttrs: (k) => ({ 'data-key': k.id }), empty: 'No key matches.' }));

  const nav = h('nav', { class: 'row pager', 'aria-label': 'Pages of keys' },
    h('button', { type: 'button', class: 'secondary', disabled: state.cursors.length < 2, onclick: () => { state.cursors.pop(); rerender(); } }, 'Previous page'),
    h('span', { class: 'muted' }, `page ${state.cursors.length}`),
    h('button', { type: 'button', class: 'secondary', disabled: !page.next_cursor, onclick: () => { state.cursors.push(page.next_cursor); rerender(); } }, 'Next page'));
  root.append(nav);
}

function filters(groups, rerender) {
  const f = state.filters;
  const group = select('group', [['', 'any group'], ...groups], f.group || '');
  const status = select('status', [['', 'any status'], 'active', 'disabled', 'expired', 'revoked'], f.status || '');
  const owner = input('owner', { value: f.owner || '' });
  const tag = input('tag', { value: f.tag || '', placeholder: 'name:value' });
  const q = input('q', { type: 'search', value: f.q || '', placeholder: 'id, name or prefix' });
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter keys' },
    field('Group', group), field('Status', status), field('Owner', owner), field('Tag', tag), field('Search', q),
    h('div', { class: 'field' }, h('button', { type: 'submit' }, 'Apply')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.filters = { group: group.value, status: status.value, owner: owner.value.trim(), tag: tag.value.trim(), q: q.value.trim() };
    state.cursors = [null];
    rerender();
  });
  return form;
}

function actions(k, groups, rerender) {
  if (k.source === 'config') return h('span', { class: 'muted' }, 'in the policy file');
  if (k.status === 'revoked') return h('span', { class: 'muted' }, '—');
  const id = enc(k.id);
  const btn = (action, label, f, danger) => h('button', { type: 'button', class: danger ? 'small danger' : 'small secondary', 'data-action': action, 'aria-label': `${label} ${k.name}`, onclick: f }, label);
  const out = [];
  if (can('PATCH /v1/keys/{id}')) {
    out.push(btn('edit', 'Edit', async () => {
      const r = await formDialog(`Edit ${k.name}`, keyForm(groups, k), (b) => api('PATCH', `/v1/keys/${id}`, b), 'Save');
      if (r) { toast('Saved.'); rerender(); }
    }));
  }
  if (can('POST /v1/keys/{id}/disable')) {
    out.push(k.status === 'disabled'
      ? btn('enable', 'Enable', async () => { if (await attempt(() => post(`/v1/keys/${id}/enable`), 'Enabled.')) rerender(); })
      : btn('disable', 'Disable', async () => { if (await attempt(() => post(`/v1/keys/${id}/disable`), 'Disabled: 403 key_disabled until enabled.')) rerender(); }));
  }
  if (can('POST /v1/keys/{id}/regenerate')) {
    out.push(btn('regenerate', 'Regenerate', async () => {
      const grace = input('grace_period', { placeholder: 'e.g. 1h; empty: none' });
      const v = await modal(`Regenerate ${k.name}?`, [h('p', {}, 'A new secret replaces the old one; the old one works until the grace period ends.'), field('Grace period', grace)],
        [{ label: 'Cancel', value: 'cancel', class: 'secondary' }, { label: 'Regenerate', value: 'ok', class: 'danger' }]);
      if (v !== 'ok') return;
      const body = grace.value.trim() ? { grace_period: grace.value.trim() } : {};
      const r = await attempt(() => post(`/v1/keys/${id}/regenerate`, body));
      if (r) { await showOnce(`New secret for "${r.name}"`, 'API key', r.key); rerender(); }
    }));
  }
  if (can('POST /v1/keys/{id}/move')) {
    out.push(btn('move', 'Move', async () => {
      const to = select('group', groups.filter((g) => g !== k.group));
      const v = await modal(`Move ${k.name}`, [h('p', {}, 'The same key string follows the new group\'s policy from the next request.'), field('To group', to)],
        [{ label: 'Cancel', value: 'cancel', class: 'secondary' }, { label: 'Move', value: 'ok' }]);
      if (v === 'ok' && (await attempt(() => post(`/v1/keys/${id}/move`, { group: to.value }), 'Moved.'))) rerender();
    }));
  }
  if (can('DELETE /v1/keys/{id}')) {
    out.push(btn('revoke', 'Revoke', async () => {
      if (!(await confirm(`Revoke ${k.name}?`, 'Permanent: the key answers 403 key_revoked from the next request.', 'Revoke', true))) return;
      if (await attempt(() => api('DELETE', `/v1/keys/${id}`), 'Revoked.')) rerender();
    }, true));
  }
  return out.length ? h('div', { class: 'row' }, out) : h('span', { class: 'muted' }, 'read only');
}

/** The group's bulk actions, offered while the list is filtered to one group. */
function bulkBar(group, rerender) {
  const act = (verb, label, message, danger) => h('button', {
    type: 'button', class: danger ? 'small danger' : 'small secondary', 'data-bulk': verb,
    onclick: async () => {
      if (!(await confirm(`${label} of ${group}?`, message, label, danger))) return;
      const r = await attempt(() => post(`/v1/groups/${enc(group)}/keys/${verb}`));
      if (r) { toast(`${group}: ${r.affected} affected, ${r.skipped} skipped.`); rerender(); }
    },
  }, label);
  return h('div', { class: 'row bulk', role: 'group', 'aria-label': `Bulk actions on ${group}` },
    h('span', { class: 'muted' }, `Every API key of ${group}:`),
    act('disable', 'Disable all', 'Every API key of the group is disabled (file keys are skipped).'),
    act('enable', 'Enable all', 'Every disabled API key of the group is enabled again.'),
    act('revoke', 'Revoke all', 'Every API key of the group is revoked, permanently.', true));
}

async function batch(groups) {
  const count = input('count', { type: 'number', min: '1', max: '1000', value: '10', required: true });
  const prefix = input('name_prefix', { value: 'key' });
  const group = select('group', groups, groups[0]);
  const ttl = input('ttl', { placeholder: 'e.g. 2d' });
  const budget = input('budget_usd', { type: 'number', min: '0', step: 'any' });
  const form = {
    el: h('div', { class: 'form-grid' }, field('How many', count), field('Group', group), field('Name prefix', prefix), field('Lifetime (ttl)', ttl), field('Budget per key (USD)', budget)),
    read: () => {
      const b = { count: Number(count.value), group: group.value, name_prefix: prefix.value.trim() || 'key' };
      if (ttl.value.trim()) b.ttl = ttl.value.trim();
      if (budget.value.trim()) b.budget_usd = Number(budget.value);
      return b;
    },
  };
  const r = await formDialog('Create keys in a batch', form, (b) => post('/v1/keys/batch', b), 'Create');
  if (!r) return;
  const quote = (s) => `"${String(s).replace(/"/g, '""')}"`;
  const text = ['id,name,prefix,key', ...r.data.map((k) => [k.id, k.name, k.prefix, k.key].map(quote).join(','))].join('\n') + '\n';
  const save = h('button', { type: 'button', 'data-action': 'download-csv', onclick: () => download(`${group.value}-keys.csv`, text) }, 'Download CSV');
  await modal(`${r.data.length} keys created`, [
    h('p', {}, 'The raw keys are in the CSV only, and only now: download it before closing.'), save,
  ], [{ label: 'Done', value: 'ok' }]);
}
