// DOM helpers. Every piece of text reaches the page through textContent or an attribute
// set with setAttribute, never parsed as HTML: a key named `<img src=x onerror=…>` is
// shown as those characters.

/** `h('button', {class: 'x', onclick: f, 'aria-label': 'y'}, 'text', child…)` */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked' || k === 'disabled' || k === 'hidden' || k === 'required') el[k] = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/**
 * Draws a page into `root`, in a box of its own that replaces what was there at once.
 * `render(box, redraw)` may await the API on the way; a draw overtaken by a newer one (a
 * redraw, another page, sign-out) goes on into a box no longer in the document, so two
 * draws never mix on the page. A render that throws leaves its error in its box.
 */
export async function draw(root, render) {
  const box = h('div', { class: 'view' });
  root.replaceChildren(box);
  try {
    await render(box, () => draw(root, render));
  } catch (e) {
    box.append(errorBox(e));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Money: decimal USD as the API gives it. */
export function usd(n) {
  if (n === null || n === undefined) return '—';
  const v = Number(n);
  // Whole cents (budgets, large sums) with two decimals; a fraction of a cent with six.
  const cents = Math.abs(v) >= 100 || Math.abs(v * 100 - Math.round(v * 100)) < 1e-9;
  return `$${v.toFixed(cents ? 2 : 6)}`;
}

export const num = (n) => (n === null || n === undefined ? '—' : Number(n).toLocaleString('en-US'));

export function when(s) {
  if (!s) return '—';
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? String(s) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

/** RFC 3339 without fractions (what the API parses). */
export const iso = (d) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

/**
 * A table: `columns` are `{label, cell(row) -> text|Node, num?}`; `rows` the data.
 * `caption` names it for screen readers; `opts.after(row)` may give a `<tr>` to follow
 * the row's (e.g. its details, hidden until asked for).
 */
export function table(caption, columns, rows, opts = {}) {
  const head = h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)));
  const body = rows.length
    ? rows.map((r) => [h('tr', opts.rowAttrs ? opts.rowAttrs(r) : {},
      columns.map((c) => h('td', { class: c.num ? 'num' : null, 'data-col': c.key || null }, c.cell(r)))),
    opts.after ? opts.after(r) : null])
    : [h('tr', {}, h('td', { colspan: columns.length, class: 'empty' }, opts.empty || 'Nothing here.'))];
  return h('div', { class: 'table-wrap' },
    h('table', { 'data-table': opts.id || null }, h('caption', {}, caption), h('thead', {}, head), h('tbody', {}, body)));
}

/** A labelled form control. */
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hint ? h('small', {}, hint) : null);
}

export function select(name, options, value) {
  return h('select', { name },
    options.map((o) => {
      const [v, label] = Array.isArray(o) ? o : [o, o];
      return h('option', { value: v, selected: v === value ? 'selected' : null }, label);
    }));
}

/** A modal `<dialog>` (`opts.wide`: a wider one for long forms); resolves with the button value that closed it (Escape: 'cancel'). */
export function modal(title, body, buttons, opts = {}) {
  const titleId = `d-${Math.random().toString(36).slice(2, 9)}`;
  let resolve;
  const done = new Promise((r) => { resolve = r; });
  // Settled at once when a button closes the dialog: the `close` event comes a task later,
  // and the page must not be left showing (and taking input into) what the caller redraws.
  let settled = false;
  const finish = (v) => {
    if (settled) return;
    settled = true;
    dlg.remove();
    resolve(v);
  };
  const dlg = h('dialog', { 'aria-labelledby': titleId, class: opts.wide ? 'wide' : null },
    h('h2', { id: titleId }, title),
    h('div', { class: 'dialog-body' }, body),
    h('div', { class: 'actions' }, buttons.map((b) => h('button', {
      type: 'button', class: b.class || null, value: b.value,
      onclick: async (ev) => {
        if (b.onclick && (await b.onclick(ev)) === false) return;
        dlg.close(b.value);
        finish(b.value);
      },
    }, b.label))));
  // Escape, or anything else that closes it without a button: cancelled.
  dlg.addEventListener('close', () => finish(dlg.returnValue || 'cancel'));
  document.body.append(dlg);
  dlg.showModal();
  return done;
}

export async function confirm(title, message, action = 'Confirm', danger = false) {
  const v = await modal(title, h('p', {}, message), [
    { label: 'Cancel', value: 'cancel', class: 'secondary' },
    { label: action, value: 'ok', class: danger ? 'danger' : null },
  ]);
  return v === 'ok';
}

/**
 * A secret shown once: a read-only field, a copy button; closing the dialog drops the
 * only reference to it (it is in no table, no storage, no URL).
 */
export async function showOnce(title, label, secret, extra) {
  const input = h('input', { type: 'text', readonly: true, value: secret, class: 'secret', spellcheck: 'false', 'data-secret': '' });
  const status = h('span', { role: 'status', class: 'hint' });
  const copy = h('button', {
    type: 'button',
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(input.value);
      } catch {
        input.select();
        document.execCommand('copy');
      }
      status.textContent = 'Copied.';
    },
  }, 'Copy');
  await modal(title, [
    h('p', {}, 'This is the only time it is shown: copy it now. tollgate keeps only its SHA-256.'),
    field(label, input), h('div', { class: 'row' }, copy, status), extra || null,
  ], [{ label: 'Done', value: 'ok' }]);
  input.value = '';
}

/** A file download built in the page (no URL carries the token). */
export function download(filename, text, type = 'text/csv') {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

let toastTimer = null;
export function toast(message, kind = 'ok') {
  const t = document.getElementById('toast');
  t.textContent = message;
  t.className = `toast show ${kind}`;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.className = 'toast'; }, 6000);
}

/** Runs an action, reporting its error (the API's message) instead of throwing. */
export async function attempt(f, ok) {
  try {
    const r = await f();
    if (ok) toast(ok);
    return r;
  } catch (e) {
    toast(e.message || String(e), 'error');
    return undefined;
  }
}

/** A budget bar: `<meter>` with the numbers beside it. */
export function budgetBar(spend, budget) {
  if (!budget) return h('span', { class: 'muted' }, 'no budget');
  const share = Math.min(1, Number(spend) / Number(budget));
  return h('span', { class: 'budget' },
    h('meter', { min: 0, max: 1, low: 0.8, high: 0.95, optimum: 0, value: share, 'aria-label': `budget used ${Math.round(share * 100)}%` }),
    ` ${Math.round(share * 100)}% of ${usd(budget)}`);
}

export function badge(text) {
  return h('span', { class: `badge ${String(text).replace(/[^a-z_]/g, '')}` }, text);
}

export function pageHeader(title, ...extra) {
  return h('div', { class: 'page-head' }, h('h1', {}, title), extra);
}

export function errorBox(e) {
  return h('p', { class: 'error', role: 'alert' }, e.message || String(e));
}
