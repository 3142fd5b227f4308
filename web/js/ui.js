// Shared DOM helpers and page chrome: element builder (text only, never HTML), top bar with the
// session, the sign in / sign up dialog, toasts, copy to clipboard and small formatters.
import { api, ApiError } from './api.js';

/**
 * Builds an element. `props`: className, dataset, attrs (setAttribute), on (listeners), and any
 * DOM property (e.g. type, value, disabled). Children: nodes or strings (as text nodes).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null) continue;
    if (k === 'className') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'attrs') for (const [a, av] of Object.entries(v)) el.setAttribute(a, av);
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'text') el.textContent = v;
    else el[k] = v;
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function setChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

export const $ = (sel, root = document) => root.querySelector(sel);

export function formatCount(n) {
  n = Number(n) || 0;
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(0)}K`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

export function formatDuration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const hh = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** A URL we agree to load as an image: http(s) or a same-origin path. */
export function safeImageUrl(u) {
  if (typeof u !== 'string' || !u.trim()) return null;
  try {
    const url = new URL(u.trim(), location.href);
    if (url.protocol === 'http:' || url.protocol === 'https:') return url.href;
  } catch {
    /* not a URL */
  }
  return null;
}

function hue(str) {
  let x = 0;
  for (const ch of String(str)) x = (x * 31 + ch.codePointAt(0)) >>> 0;
  return x % 360;
}

/** A round avatar: the picture when there is one, else the initial on a colour of the name. */
export function avatar(name, url, size = 32) {
  const el = h('span', { className: 'avatar', attrs: { 'aria-hidden': 'true' } });
  el.style.setProperty('--size', `${size}px`);
  el.style.setProperty('--hue', hue(name || '?'));
  const initial = (Array.from((name || '?').trim())[0] || '?').toUpperCase();
  const src = safeImageUrl(url);
  if (src) {
    const img = h('img', { alt: '', loading: 'lazy', decoding: 'async' });
    img.addEventListener('error', () => setChildren(el, initial), { once: true });
    img.src = src;
    el.append(img);
  } else {
    el.textContent = initial;
  }
  return el;
}

/** A cover picture, or a generated gradient with the room's name when there is none. */
export function cover(url, title, seed) {
  const el = h('div', { className: 'cover' });
  el.style.setProperty('--hue', hue(seed ?? title ?? ''));
  const fallback = () =>
    setChildren(el, h('span', { className: 'cover-fallback', text: (Array.from((title || '').trim())[0] || '▶').toUpperCase() }));
  const src = safeImageUrl(url);
  if (src) {
    const img = h('img', { alt: '', loading: 'lazy', decoding: 'async' });
    img.addEventListener('error', fallback, { once: true });
    img.src = src;
    el.append(img);
  } else fallback();
  return el;
}

// ---- toasts ---------------------------------------------------------------------------------

let toastBox;
export function toast(message, kind = 'info', ms = 3500) {
  if (!toastBox) {
    toastBox = h('div', { className: 'toasts', attrs: { role: 'status', 'aria-live': 'polite' } });
    document.body.append(toastBox);
  }
  const t = h('div', { className: `toast toast-${kind}`, text: message });
  toastBox.append(t);
  setTimeout(() => {
    t.classList.add('leaving');
    setTimeout(() => t.remove(), 300);
  }, ms);
}

export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    /* fall back below */
  }
  const ta = h('textarea', { value: text, readOnly: true, className: 'offscreen' });
  document.body.append(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  ta.remove();
  return ok;
}

/** A "Copy" button copying `getText()`; flips to "Copied" for a moment. */
export function copyButton(getText, label = 'Copy', testid) {
  const b = h('button', { type: 'button', className: 'btn btn-small', text: label, dataset: testid ? { testid } : undefined });
  b.addEventListener('click', async () => {
    const ok = await copyText(getText());
    b.textContent = ok ? 'Copied' : 'Copy failed';
    b.classList.toggle('ok', ok);
    setTimeout(() => {
      b.textContent = label;
      b.classList.remove('ok');
    }, 1500);
  });
  return b;
}

// ---- modal dialog ---------------------------------------------------------------------------

/** Opens a modal with `content`; returns {close, el}. Escape or the backdrop close it. */
export function modal(title, content, { onClose, className = '' } = {}) {
  const prev = document.activeElement;
  const closeBtn = h('button', { type: 'button', className: 'icon-btn modal-x', attrs: { 'aria-label': 'Close' }, text: '×' });
  const box = h('div', { className: `modal ${className}`, attrs: { role: 'dialog', 'aria-modal': 'true', 'aria-label': title } },
    h('div', { className: 'modal-head' }, h('h2', { text: title }), closeBtn),
    content);
  const backdrop = h('div', { className: 'backdrop' }, box);
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    document.removeEventListener('keydown', onKey);
    backdrop.remove();
    if (prev && prev.focus) prev.focus();
    if (onClose) onClose();
  };
  const onKey = (e) => {
    if (e.key === 'Escape') close();
  };
  closeBtn.addEventListener('click', close);
  backdrop.addEventListener('mousedown', (e) => {
    if (e.target === backdrop) close();
  });
  document.addEventListener('keydown', onKey);
  document.body.append(backdrop);
  const first = box.querySelector('input, select, textarea, button:not(.modal-x)');
  if (first) first.focus();
  return { close, el: box };
}

export function confirmDialog(title, message, okLabel = 'OK', danger = false) {
  return new Promise((resolve) => {
    let answered = false;
    const ok = h('button', { type: 'button', className: `btn ${danger ? 'btn-danger' : 'btn-primary'}`, text: okLabel, dataset: { testid: 'confirm-ok' } });
    const cancel = h('button', { type: 'button', className: 'btn', text: 'Cancel' });
    const m = modal(title, h('div', {}, h('p', { className: 'muted', text: message }), h('div', { className: 'modal-actions' }, cancel, ok)), {
      onClose: () => {
        if (!answered) resolve(false);
      },
    });
    ok.addEventListener('click', () => {
      answered = true;
      m.close();
      resolve(true);
    });
    cancel.addEventListener('click', () => m.close());
    ok.focus();
  });
}

// ---- session and top bar --------------------------------------------------------------------

let sessionPromise;
/** The visitor, from /home/initPage (cached for the page; `refresh` asks again). */
export function session(refresh = false) {
  if (!sessionPromise || refresh) {
    sessionPromise = api.initPage().catch((e) => {
      console.warn('initPage failed:', e.message);
      return { loginStatus: false };
    });
  }
  return sessionPromise;
}

function field(label, input, hint) {
  return h('label', { className: 'field' }, h('span', { className: 'field-label', text: label }), input, hint ? h('span', { className: 'field-hint', text: hint }) : null);
}

/** The sign in / sign up dialog. Resolves true once signed in. */
export function authDialog(mode = 'signin') {
  return new Promise((resolve) => {
    let done = false;
    const err = h('p', { className: 'form-error', attrs: { role: 'alert' } });
    const username = h('input', { name: 'username', autocomplete: 'username', required: true, minLength: 3, maxLength: 32, pattern: '[A-Za-z0-9_]{3,32}', spellcheck: false });
    const nickname = h('input', { name: 'nickname', autocomplete: 'nickname', maxLength: 32, placeholder: 'How others see you' });
    const password = h('input', { name: 'password', type: 'password', required: true, minLength: 6, maxLength: 128 });
    const submit = h('button', { type: 'submit', className: 'btn btn-primary btn-block' });
    const nickField = field('Display name', nickname);
    const tabIn = h('button', { type: 'button', className: 'tab', text: 'Sign in', dataset: { mode: 'signin' } });
    const tabUp = h('button', { type: 'button', className: 'tab', text: 'Sign up', dataset: { mode: 'signup' } });
    const setMode = (m) => {
      mode = m;
      tabIn.classList.toggle('active', m === 'signin');
      tabUp.classList.toggle('active', m === 'signup');
      tabIn.setAttribute('aria-selected', String(m === 'signin'));
      tabUp.setAttribute('aria-selected', String(m === 'signup'));
      nickField.hidden = m !== 'signup';
      password.autocomplete = m === 'signup' ? 'new-password' : 'current-password';
      submit.textContent = m === 'signup' ? 'Create account' : 'Sign in';
      err.textContent = '';
    };
    tabIn.addEventListener('click', () => setMode('signin'));
    tabUp.addEventListener('click', () => setMode('signup'));
    const form = h('form', { className: 'auth-form', noValidate: false },
      h('div', { className: 'tabs', attrs: { role: 'tablist' } }, tabIn, tabUp),
      field('Username', username, '3–32 letters, digits or _'),
      nickField,
      field('Password', password, 'At least 6 characters'),
      err,
      submit);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      err.textContent = '';
      submit.disabled = true;
      try {
        if (mode === 'signup') await api.register(username.value.trim(), password.value, nickname.value.trim() || username.value.trim());
        else await api.login(username.value.trim(), password.value);
        done = true;
        m.close();
        resolve(true);
      } catch (ex) {
        err.textContent = ex instanceof ApiError ? ex.message : String(ex);
      } finally {
        submit.disabled = false;
      }
    });
    const m = modal('Welcome to livehouse', form, { className: 'auth', onClose: () => !done && resolve(false) });
    setMode(mode);
    username.focus();
  });
}

/**
 * Renders the top bar into `#topbar` for the visitor. `onAuthChange` runs after sign in/out
 * (default: reload the page).
 */
export async function renderTopbar({ onAuthChange } = {}) {
  const bar = document.getElementById('topbar');
  const me = await session();
  const changed = onAuthChange || (() => location.reload());
  const logo = h('a', { href: '/', className: 'logo', attrs: { 'aria-label': 'livehouse home' } },
    h('span', { className: 'logo-mark', attrs: { 'aria-hidden': 'true' } }), h('span', { className: 'logo-text', text: 'livehouse' }));
  const right = h('div', { className: 'topbar-right' });
  if (me.loginStatus) {
    if (me.showStartLivingBtn) {
      right.append(h('a', { href: '/studio.html', className: 'btn btn-primary btn-go-live', dataset: { testid: 'start-streaming' } },
        h('span', { className: 'dot', attrs: { 'aria-hidden': 'true' } }), h('span', { className: 'label-long', text: 'Start streaming' }), h('span', { className: 'label-short', text: 'Go live' })));
    }
    const out = h('button', { type: 'button', className: 'btn btn-ghost', text: 'Sign out', dataset: { testid: 'sign-out' } });
    out.addEventListener('click', async () => {
      try {
        await api.logout();
      } catch (e) {
        toast(e.message, 'error');
      }
      await session(true);
      changed(false);
    });
    right.append(h('span', { className: 'me', title: me.nickName || '' }, avatar(me.nickName, me.avatar, 28), h('span', { className: 'me-name', text: me.nickName || `user ${me.userId}`, dataset: { testid: 'me-name' } })), out);
  } else {
    const signIn = h('button', { type: 'button', className: 'btn btn-ghost', text: 'Sign in', dataset: { testid: 'sign-in' } });
    const signUp = h('button', { type: 'button', className: 'btn btn-primary', text: 'Sign up', dataset: { testid: 'sign-up' } });
    const open = async (mode) => {
      if (await authDialog(mode)) {
        await session(true);
        changed(true);
      }
    };
    signIn.addEventListener('click', () => open('signin'));
    signUp.addEventListener('click', () => open('signup'));
    right.append(signIn, signUp);
  }
  setChildren(bar, h('div', { className: 'topbar-inner' }, logo, h('nav', { className: 'topnav' }, h('a', { href: '/', text: 'Browse' })), right));
  return me;
}

/** Runs `fn` now and every `ms` while the page is visible; returns a stop function. */
export function every(ms, fn) {
  let timer = null;
  let stopped = false;
  let running = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden && !running) {
      running = true;
      try {
        await fn();
      } catch (e) {
        console.warn(e);
      } finally {
        running = false;
      }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  const onVis = () => {
    if (!document.hidden && !stopped) {
      clearTimeout(timer);
      tick();
    }
  };
  document.addEventListener('visibilitychange', onVis);
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
    document.removeEventListener('visibilitychange', onVis);
  };
}
