// The documented admin API, and nothing else: every call carries the token from this
// tab's session storage in the Authorization header (never in a URL, so it is in no log,
// history or Referer). A cookie is never used, which is why CSRF does not apply.

const STORE = 'tollgate.admin_token';

export const session = {
  token: () => sessionStorage.getItem(STORE),
  signIn: (t) => sessionStorage.setItem(STORE, t),
  signOut: () => sessionStorage.removeItem(STORE),
};

export class ApiError extends Error {
  constructor(status, body) {
    const e = body && body.error;
    super(e && e.message ? e.message : `HTTP ${status}`);
    this.status = status;
    this.code = e ? e.code : null;
    this.param = e ? e.param : null;
  }
}

async function send(method, path, body, accept) {
  const headers = { Authorization: `Bearer ${session.token() || ''}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (accept) headers.Accept = accept;
  const r = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
    credentials: 'omit',
    referrerPolicy: 'no-referrer',
  });
  const text = await r.text();
  if (!r.ok) {
    let parsed = null;
    try { parsed = JSON.parse(text); } catch { /* not JSON */ }
    if (r.status === 401) window.dispatchEvent(new CustomEvent('tollgate:unauthorized'));
    throw new ApiError(r.status, parsed);
  }
  return text;
}

export async function api(method, path, body) {
  const text = await send(method, path, body);
  return text ? JSON.parse(text) : null;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body === undefined ? {} : body);

/** A spend route's CSV (`?format=csv`). */
export const csv = (path) => send('GET', path + (path.includes('?') ? '&' : '?') + 'format=csv');

/** `?a=1&b=2` from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

export const enc = encodeURIComponent;

/** The signed-in token (`GET /v1/whoami`), with `may`: the routes its role may call. */
export let me = null;

export async function loadMe() {
  me = await get('/v1/whoami');
  return me;
}

/** May this token call `METHOD /path/template`? The server's route table decides. */
export const can = (route) => !!me && me.may.includes(route);
