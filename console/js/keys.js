// Keys: the list with filters, search and cursor pagination; create (the raw key shown
// once), batch create (raw keys as a CSV download), edit, disable / enable, regenerate,
// move, revoke. Buttons appear only for what the token's role may call.

import { get, api, post, can, me, query, enc } from './api.js';
import { editAllKeys, mayEditAll } from './bulk.js';
import {
  h, table, usd, num, when, badge, pageHeader, field, select, modal, confirm, showOnce,
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

/** The fields of create; returns `{el, read()}` giving the body. */
function keyForm(groups) {
  const f = {
    name: input('name', { required: true }),
    owner: input('owner', { value: me.role === 'developer' ? me.owner : '' }),
    ttl: input('ttl', { placeholder: 'e.g. 30d' }),
    budget_usd: input('budget_usd', { type: 'number', min: '0', step: 'any' }),
    rpm: input('rpm', { type: 'number', min: '1', step: '1' }),
    tags: input('tags', { placeholder: 'team=search, cost_center=cc-1' }),
  };
  // A token that cannot list groups (a developer scoped to every group) types the id.
  const group = groups.length ? select('group', groups, groups[0]) : input('group', { required: true });
  const el = h('div', { class: 'form-grid' },
    field('Name', f.name),
    field('Group', group),
    field('Owner', f.owner),
    field('Lifetime (ttl)', f.ttl, 'Empty: the group\'s key_ttl'),
    field('Budget (USD)', f.budget_usd),
    field('Requests per minute', f.rpm),
    field('Tags', f.tags, 'name=value, comma separated'));
  const read = () => {
    const body = {};
    const text = (k) => f[k].value.trim();
    body.name = text('name');
    body.group = group.value;
    if (text('owner')) body.owner = text('owner');
    if (text('ttl')) body.ttl = text('ttl');
    if (text('budget_usd')) body.budget_usd = Number(text('budget_usd'));
    if (text('rpm')) body.rpm = Number(text('rpm'));
    if (text('tags')) body.tags = parseTags(text('tags'));
    return body;
  };
  return { el, read };
}

/** An error the form found itself, shown like the API's: next to `param`. */
const fieldError = (param, message) => Object.assign(new Error(message), { param });

/** Limit fields, in the API's names, with their labels. */
const LIMITS = [
  ['rpm', 'Requests per minute (rpm)'],
  ['rph', 'Requests per hour (rph)'],
  ['rpd', 'Requests per day (rpd)'],
  ['tpm', 'Tokens per minute (tpm)'],
  ['tpd', 'Tokens per day (tpd)'],
  ['max_parallel', 'Parallel requests (max_parallel)'],
  ['max_tokens', 'Max tokens per request (max_tokens)'],
  ['budget_usd', 'Budget (USD)'],
  ['soft_budget_usd', 'Soft budget (USD)'],
];

/** A limit as the API shows it (`60` or `{value: 60, mode: "shadow"}`) ⇄ `60` / `60 shadow`. */
function limitText(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') return `${v.value}${v.mode === 'shadow' ? ' shadow' : ''}`;
  return String(v);
}
function parseLimit(param, s) {
  const m = /^(\d+(?:\.\d+)?)(\s+shadow)?$/i.exec(s);
  if (!m) throw fieldError(param, `${param}: write a number, or a number then "shadow" (only logged)`);
  return m[2] ? { value: Number(m[1]), mode: 'shadow' } : Number(m[1]);
}
const listText = (l) => (l || []).join(', ');
const parseList = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);

/**
 * Every field `PATCH /v1/keys/{id}` accepts but `group` (moved with Move). The body holds
 * only the fields the user changed; a field emptied is a JSON null (cleared). `show(e)`
 * puts an error next to the field its `param` names.
 */
function editForm(key) {
  const l = key.limits || {};
  // [param, label, control, initial text, text → JSON value, hint]
  const specs = [];
  const text = (param, label, initial, parse, attrs = {}, hint) => {
    const c = input(param, { value: initial, ...attrs });
    specs.push({ param, label, control: c, initial, parse, hint });
    return c;
  };
  const str = (s) => s;
  text('name', 'Name', key.name || '', str, { required: true });
  text('owner', 'Owner', key.owner || '', str);
  text('tags', 'Tags', tagsText(key.tags), (s) => { try { return parseTags(s); } catch (e) { throw fieldError('tags', e.message); } }, { placeholder: 'team=search, cost_center=cc-1' }, 'name=value, comma separated');
  text('expires_at', 'Expires at', key.expires_at || '', str, { placeholder: '2027-01-01T00:00:00Z' }, 'RFC 3339 UTC; empty: never');
  text('ttl', 'New lifetime from now (ttl)', '', str, { placeholder: 'e.g. 30d' }, 'Sets expires_at');
  text('rotation_interval', 'Rotation interval', key.rotation_interval || '', str, { placeholder: 'e.g. 30d' }, 'Regenerated when due; empty: never');
  text('models', 'Models', listText(key.models), parseList, { placeholder: 'gpt-4o*, claude-*' }, 'Comma separated, * wildcards; empty: the group\'s');
  text('deny_models', 'Denied models', listText(key.deny_models), parseList, { placeholder: '*-preview' }, 'Comma separated');
  text('allowed_cidrs', 'Allowed CIDRs', listText(key.allowed_cidrs), parseList, { placeholder: '10.0.0.0/8, 2001:db8::/32' }, 'Client addresses; empty: any');
  text('guardrails', 'Guardrails', listText(key.guardrails), parseList, { placeholder: 'pii, no-secrets' }, `Added to the group's and org's (always in force: ${(key.guardrails_in_force || []).filter((g) => !(key.guardrails || []).includes(g)).join(', ') || 'none'})`);
  for (const [param, label] of LIMITS) {
    text(param, label, limitText(l[param]), (s) => parseLimit(param, s), { inputmode: 'decimal' });
  }
  const period = select('budget_period', [['', '(default: monthly)'], 'daily', 'weekly', 'monthly', 'never'], l.budget_period || '');
  specs.push({ param: 'budget_period', label: 'Budget period', control: period, initial: l.budget_period || '', parse: str });
  const meta = h('textarea', { name: 'metadata', rows: 3, spellcheck: 'false', placeholder: '{"jira": "OPS-1"}' });
  meta.value = key.metadata ? JSON.stringify(key.metadata) : '';
  specs.push({
    param: 'metadata', label: 'Metadata (JSON object)', control: meta, initial: meta.value, hint: 'At most 4 KiB',
    parse: (s) => {
      let v;
      try { v = JSON.parse(s); } catch (e) { throw fieldError('metadata', `metadata: not JSON (${e.message})`); }
      if (!v || typeof v !== 'object' || Array.isArray(v)) throw fieldError('metadata', 'metadata must be a JSON object');
      return v;
    },
  });

  // Issue-22 policy fields. Some are served by builds with those features only: a field
  // is sent only when the user changes it, so an untouched one never reaches the API.
  const jsonObject = (param) => (s) => {
    let v;
    try { v = JSON.parse(s); } catch (e) { throw fieldError(param, `${param}: not JSON (${e.message})`); }
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw fieldError(param, `${param} must be a JSON object`);
    return v;
  };
  const own = (k) => (key[k] !== undefined ? key[k] : l[k]);
  const asJson = (v) => (v && typeof v === 'object' ? JSON.stringify(v) : '');
  text('token_budget', 'Token budget (token_budget)', own('token_budget') == null ? '' : String(own('token_budget')), (s) => parseLimit('token_budget', s), { inputmode: 'numeric' }, 'Input + output tokens per period');
  const tperiod = select('token_budget_period', [['', '(default: monthly)'], 'daily', 'weekly', 'monthly', 'never'], own('token_budget_period') || '');
  specs.push({ param: 'token_budget_period', label: 'Token budget period', control: tperiod, initial: own('token_budget_period') || '', parse: str });
  text('allowed_providers', 'Allowed providers', listText(own('allowed_providers')), parseList, { placeholder: 'openai, azure-*' }, 'Comma separated; empty: any');
  text('required_params', 'Required parameters', listText(own('required_params')), parseList, { placeholder: 'user' }, 'Comma separated');
  text('allowed_origins', 'Allowed origins', listText(own('allowed_origins')), parseList, { placeholder: 'https://app.example.com' }, 'Browser keys; comma separated');
  text('client_cert_sha256', 'Client certificate SHA-256', listText(key.client_cert_sha256), parseList, { placeholder: '9f86d0…' }, 'SHA-256 of the certificate\'s DER, comma separated; needs tls.client_ca');
  for (const [param, label, hint] of [
    ['fixed_params', 'Fixed parameters (JSON object)', 'Set in every request sent upstream, e.g. {"store": false}'],
    ['model_limits', 'Limits per model (JSON object)', 'e.g. {"gpt-4o*": {"rpm": 100}}'],
  ]) {
    const area = h('textarea', { name: param, rows: 2, spellcheck: 'false' });
    area.value = asJson(own(param));
    specs.push({ param, label, control: area, initial: area.value, hint, parse: jsonObject(param) });
  }
  const cert = h('input', { name: 'require_client_cert', type: 'checkbox' });
  cert.checked = !!key.require_client_cert;
  specs.push({
    param: 'require_client_cert', label: 'Require a client certificate', control: cert, checkbox: true,
    initial: cert.checked ? 'true' : '', hint: 'mTLS: requests must present a certificate tls.client_ca verifies',
  });

  const errors = new Map();
  const cell = (s) => {
    const err = h('small', { class: 'field-error', 'data-error-for': s.param, role: 'alert' });
    errors.set(s.param, { err, control: s.control });
    const f = field(s.label, s.control, s.hint);
    f.setAttribute('data-param', s.param);
    f.append(err);
    return f;
  };
  const by = (names) => specs.filter((s) => names.includes(s.param)).map(cell);
  const group = (legend, names) => h('fieldset', {}, h('legend', {}, legend), h('div', { class: 'form-grid' }, by(names)));
  const el = h('div', { class: 'edit-form', 'data-form': 'edit-key' },
    h('p', { class: 'muted' }, `${key.id} in ${key.group}. Only the fields you change are sent; an emptied field is cleared.`),
    group('Key', ['name', 'owner', 'tags', 'metadata']),
    group('Lifetime', ['expires_at', 'ttl', 'rotation_interval']),
    group('Access', ['models', 'deny_models', 'allowed_cidrs', 'guardrails']),
    group('Limits', [...LIMITS.map(([p]) => p), 'budget_period']),
    group('Policy', ['token_budget', 'token_budget_period', 'model_limits', 'allowed_providers', 'required_params', 'fixed_params', 'allowed_origins', 'require_client_cert', 'client_cert_sha256']),
    h('p', { class: 'hint' }, 'Limits: a number, or a number then "shadow" to only log what it would refuse. A key may only tighten its group\'s and org\'s limits.'));

  const show = (e) => {
    for (const { err, control } of errors.values()) { err.textContent = ''; control.removeAttribute('aria-invalid'); }
    const slot = e && e.param ? errors.get(e.param) : null;
    if (!slot) return false;
    slot.err.textContent = e.message;
    slot.control.setAttribute('aria-invalid', 'true');
    slot.control.focus();
    return true;
  };
  const read = () => {
    show(null);
    const body = {};
    for (const s of specs) {
      if (s.checkbox) {
        // Unticked clears the key's own rule (its group's or org's still applies).
        if (s.control.checked !== (s.initial === 'true')) body[s.param] = s.control.checked ? true : null;
        continue;
      }
      const now = s.control.value.trim();
      if (now === s.initial.trim()) continue;
      if (s.param === 'ttl') { body.ttl = now; continue; }
      body[s.param] = now === '' ? null : s.parse(now);
    }
    return body;
  };
  return { el, read, show, wide: true };
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
          // Next to its field when the form has one, else under the form.
          const placed = form.show ? form.show(e) : false;
          error.textContent = placed ? 'Not saved: see the field marked above.' : (e.param ? `${e.param}: ${e.message}` : e.message);
          return false;
        }
      },
    },
  ], { wide: form.wide });
  return result;
}

export async function render(root, rerender) {
  const groups = await groupIds();
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

  // Each key's details (every list field the columns leave out) in a row of their own.
  const details = new Map(page.data.map((k) => [k, detailRow(k)]));
  const columns = [
    {
      label: 'Name', key: 'name',
      cell: (k) => h('span', {}, h('strong', {}, k.name || k.id),
        k.prefix ? h('div', {}, h('code', { 'data-field': 'prefix' }, k.prefix)) : null,
        h('div', {}, details.get(k).toggle)),
    },
    { label: 'Group', key: 'group', cell: (k) => h('span', {}, k.group, k.org ? h('div', { class: 'muted' }, k.org) : null) },
    { label: 'Owner', cell: (k) => k.owner || '—' },
    { label: 'Status', key: 'status', cell: (k) => h('span', {}, badge(k.status), k.source === 'config' ? h('div', { class: 'muted' }, 'file key') : null) },
    { label: 'Expires', cell: (k) => stamp(k.expires_at) },
    { label: 'Last used', cell: (k) => stamp(k.last_used_at) },
    {
      label: 'Limits · models', key: 'access',
      cell: (k) => h('span', { class: 'access' },
        h('span', { 'data-field': 'limits' }, limitsSummary(k.limits)),
        h('div', { class: 'muted', 'data-field': 'models' }, modelsSummary(k))),
    },
    { label: 'Tags', key: 'tags', cell: (k) => tagsText(k.tags) || '—' },
    { label: 'Spend', num: true, cell: (k) => usd(k.spend_usd) },
    { label: 'Budget', num: true, cell: (k) => (k.budget_usd == null ? '—' : usd(k.budget_usd)) },
    { label: 'Actions', key: 'actions', cell: (k) => actions(k, groups, rerender) },
  ];
  root.append(table('API and file keys', columns, page.data, {
    id: 'keys', rowAttrs: (k) => ({ 'data-key': k.id }), empty: 'No key matches.', after: (k) => details.get(k).row,
  }));

  const nav = h('nav', { class: 'row pager', 'aria-label': 'Pages of keys' },
    h('button', { type: 'button', class: 'secondary', disabled: state.cursors.length < 2, onclick: () => { state.cursors.pop(); rerender(); } }, 'Previous page'),
    h('span', { class: 'muted' }, `page ${state.cursors.length}`),
    h('button', { type: 'button', class: 'secondary', disabled: !page.next_cursor, onclick: () => { state.cursors.push(page.next_cursor); rerender(); } }, 'Next page'));
  root.append(nav);
}

const SHORT = { rpm: 'rpm', rph: 'rph', rpd: 'rpd', tpm: 'tpm', tpd: 'tpd', max_parallel: 'parallel', max_tokens: 'max tok' };

/**
 * `60 rpm · 2 parallel · 4,000 max tok` (budgets have their own column), each item kept on
 * one line; shadow limits marked. None of its own: `—` (the group's apply).
 */
function limitsSummary(l) {
  const items = Object.entries(SHORT).filter(([f]) => l && l[f] != null).map(([f, short]) => {
    const v = l[f];
    const shadow = typeof v === 'object';
    return h('span', { class: 'nowrap' }, `${num(shadow ? v.value : v)} ${short}${shadow ? ' (shadow)' : ''}`);
  });
  return items.length ? items.flatMap((x, i) => (i ? [' · ', x] : [x])) : '—';
}

/** The key's own model lists (none: its group's apply). */
function modelsSummary(k) {
  const allow = k.models && k.models.length ? k.models.join(', ') : '';
  const deny = k.deny_models && k.deny_models.length ? `not ${k.deny_models.join(', ')}` : '';
  return [allow, deny].filter(Boolean).join(' · ') || null;
}

/** A time as date over time, each unbroken: narrow, and still the whole instant. */
function stamp(s) {
  const t = when(s);
  const i = t.indexOf(' ');
  if (i < 0) return t;
  return h('span', { class: 'stamp', title: t }, h('span', {}, t.slice(0, i)), h('span', {}, t.slice(i + 1)));
}

let detailSeq = 0;

/** A hidden `<tr>` with the key's other fields, and the button that shows it. */
function detailRow(k) {
  const id = `key-detail-${++detailSeq}`;
  const l = k.limits || {};
  const item = (label, value, name) => h('div', {}, h('dt', {}, label), h('dd', { 'data-field': name }, value === null || value === undefined || value === '' ? '—' : value));
  const limitText = Object.entries(l).map(([f, v]) => `${f} ${typeof v === 'object' && v ? `${v.value} (${v.mode})` : v}`).join(', ');
  const list = h('dl', { class: 'key-detail' },
    item('Id', h('code', {}, k.id), 'id'),
    item('Org', k.org, 'org'),
    item('Created', k.created_at ? when(k.created_at) : 'in the policy file', 'created_at'),
    item('Created by', k.created_by, 'created_by'),
    item('Limits', limitText || 'the group\'s', 'limits'),
    item('Models', k.models && k.models.length ? k.models.join(', ') : 'the group\'s', 'models'),
    item('Denied models', (k.deny_models || []).join(', '), 'deny_models'),
    item('Allowed CIDRs', k.allowed_cidrs && k.allowed_cidrs.length ? k.allowed_cidrs.join(', ') : 'any (the group\'s)', 'allowed_cidrs'),
    item('Guardrails in force', (k.guardrails_in_force || []).join(', ') || 'none', 'guardrails_in_force'),
    item('Rotation interval', k.rotation_interval, 'rotation_interval'),
    item('Metadata', k.metadata ? JSON.stringify(k.metadata) : null, 'metadata'));
  const row = h('tr', { class: 'detail', id, hidden: true, 'data-detail': k.id }, h('td', { colspan: 11 }, list));
  const toggle = h('button', {
    type: 'button', class: 'small link', 'aria-expanded': 'false', 'aria-controls': id, 'data-action': 'details',
    'aria-label': `Details of ${k.name || k.id}`,
    onclick: () => {
      row.hidden = !row.hidden;
      toggle.setAttribute('aria-expanded', String(!row.hidden));
      toggle.textContent = row.hidden ? 'Details' : 'Hide details';
    },
  }, 'Details');
  return { row, toggle };
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
      const r = await formDialog(`Edit ${k.name}`, editForm(k), (b) => api('PATCH', `/v1/keys/${id}`, b), 'Save');
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
  const edit = mayEditAll() ? h('button', {
    type: 'button', class: 'small', 'data-bulk': 'edit',
    onclick: async () => { if (await editAllKeys(group)) rerender(); },
  }, 'Edit all') : null;
  return h('div', { class: 'row bulk', role: 'group', 'aria-label': `Bulk actions on ${group}` },
    h('span', { class: 'muted' }, `Every API key of ${group}:`),
    edit,
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
