// Policy: the snapshot in force, what `tollgate -t` finds in the file on disk now, and
// the reload button.

import { get, post, can } from './api.js';
import { h, table, num, pageHeader, attempt, confirm } from './ui.js';

export async function render(root, rerender) {
  const p = await get('/v1/policy');
  const reload = can('POST /v1/reload')
    ? h('button', {
      type: 'button', 'data-action': 'reload',
      onclick: async () => {
        if (!(await confirm('Reload the policy?', `Re-reads ${p.path}; an invalid file changes nothing.`, 'Reload'))) return;
        const r = await attempt(() => post('/v1/reload'));
        if (r) rerender();
      },
    }, 'Reload now')
    : null;
  root.append(pageHeader('Policy', reload));
  root.append(h('dl', { class: 'totals' },
    h('div', {}, h('dt', {}, 'File'), h('dd', {}, h('code', {}, p.path))),
    h('div', {}, h('dt', {}, 'Generation in force'), h('dd', { 'data-field': 'generation' }, num(p.generation))),
    h('div', {}, h('dt', {}, 'Reloads (ok / failed)'), h('dd', {}, `${num(p.reloads.ok)} / ${num(p.reloads.failed)}`)),
    h('div', {}, h('dt', {}, 'File on disk'), h('dd', { 'data-field': 'file_ok', class: p.file_ok ? 'ok' : 'bad' }, p.file_ok ? 'valid' : `${p.problems.length} problem(s)`))));
  root.append(h('section', { 'aria-labelledby': 'po-counts' }, h('h2', { id: 'po-counts' }, 'Loaded'),
    table('What the policy in force defines', [
      { label: 'Providers', num: true, cell: (c) => num(c.providers) },
      { label: 'Models', num: true, cell: (c) => num(c.models) },
      { label: 'Orgs', num: true, cell: (c) => num(c.orgs) },
      { label: 'Groups', num: true, cell: (c) => num(c.groups) },
      { label: 'File keys', num: true, cell: (c) => num(c.file_keys) },
    ], [p.counts], { id: 'policy-counts' })));
  if (!p.file_ok) {
    root.append(h('section', { 'aria-labelledby': 'po-problems' }, h('h2', { id: 'po-problems' }, 'Problems in the file on disk (a reload would fail)'),
      table('Problems tollgate -t finds', [
        { label: 'Line', num: true, cell: (x) => (x.line ? `${x.line}:${x.column}` : '—') },
        { label: 'Field', cell: (x) => x.path || '—' },
        { label: 'Problem', cell: (x) => x.message },
      ], p.problems, { id: 'problems' })));
  }
  if (p.summary) {
    root.append(h('section', { 'aria-labelledby': 'po-summary' }, h('h2', { id: 'po-summary' }, 'tollgate -t on the file on disk'), h('pre', { class: 'summary' }, p.summary)));
  }
}
