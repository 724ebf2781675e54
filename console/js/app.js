// The console's shell: sign-in, the navigation the token's role allows, and a page per
// `#hash`. Pages are modules with `render(root, rerender)` (see `draw` in ui.js); each draws
// from the admin API alone.

import { session, loadMe, can, me } from './api.js';
import { h, clear, draw } from './ui.js';
import * as overview from './overview.js';
import * as groups from './groups.js';
import * as keys from './keys.js';
import * as spend from './spend.js';
import * as invoices from './invoices.js';
import * as audit from './audit.js';
import * as policy from './policy.js';
import * as drift from './drift.js';

/** Each page and the route its token must be allowed to read. */
const PAGES = [
  { id: 'overview', title: 'Overview', mod: overview, needs: 'GET /v1/groups' },
  { id: 'groups', title: 'Groups', mod: groups, needs: 'GET /v1/groups' },
  { id: 'keys', title: 'Keys', mod: keys, needs: 'GET /v1/keys' },
  { id: 'spend', title: 'Spend', mod: spend, needs: 'GET /v1/spend/groups/{id}' },
  { id: 'invoices', title: 'Invoices', mod: invoices, needs: 'GET /v1/invoices' },
  { id: 'audit', title: 'Audit', mod: audit, needs: 'GET /v1/audit' },
  // Providers are shared by every group: tokens scoped to groups are refused.
  { id: 'drift', title: 'Drift', mod: drift, needs: 'GET /v1/reconciliation', unscoped: true },
  { id: 'policy', title: 'Policy', mod: policy, needs: 'GET /v1/policy' },
];

const $ = (id) => document.getElementById(id);

const allowed = (p) => can(p.needs) && !(p.unscoped && me.groups);

function showSignIn(message) {
  $('top').hidden = true;
  clear($('page'));
  $('signin').hidden = false;
  $('signin-error').textContent = message || '';
  $('token').value = '';
  $('token').focus();
}

async function start() {
  if (!session.token()) return showSignIn();
  try {
    await loadMe();
  } catch (e) {
    session.signOut();
    return showSignIn(e.status === 401 ? 'That token is not valid (401).' : e.message);
  }
  $('signin').hidden = true;
  $('top').hidden = false;
  clear($('who'), h('span', { class: 'muted' }, 'signed in as '), h('strong', {}, me.name), ` (${me.role})`);
  const pages = PAGES.filter(allowed);
  clear($('nav'), pages.map((p) => h('li', {}, h('a', { href: `#${p.id}`, 'data-page': p.id }, p.title))));
  await route();
}

/** Counts routes: only the newest marks the page ready. */
let routes = 0;

async function route() {
  if (!me) return;
  const pages = PAGES.filter(allowed);
  const wanted = location.hash.slice(1);
  const page = pages.find((p) => p.id === wanted) || pages[0];
  if (!page) return clear($('page'), h('p', {}, 'This token may not read anything the console shows.'));
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.page === page.id) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${page.title} · tollgate console`;
  const root = $('page');
  const mine = ++routes;
  delete root.dataset.ready;
  root.dataset.page = page.id;
  root.setAttribute('aria-busy', 'true');
  await draw(root, page.mod.render);
  if (mine !== routes) return; // a newer route is drawing
  root.setAttribute('aria-busy', 'false');
  root.dataset.ready = page.id;
}

$('signin-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const t = $('token').value.trim();
  $('token').value = '';
  if (!t) return;
  session.signIn(t);
  start();
});

$('signout').addEventListener('click', () => {
  session.signOut();
  location.hash = '';
  location.reload();
});

window.addEventListener('hashchange', () => route());
window.addEventListener('tollgate:unauthorized', () => {
  session.signOut();
  showSignIn('The token was refused (401): it may have been revoked. Sign in again.');
});

start();
