// Home: the visitor's session, the live room list by type (paged, refreshing itself every few
// seconds without flicker: cards are keyed by room id and updated in place). Streaming rooms
// show their live thumbnail (/live/{id}.jpg, refreshed every 20 s) over the cover.
import { api, ROOM_TYPES, typeLabel } from './api.js';
import { h, $, setChildren, renderTopbar, authDialog, session, avatar, cover, formatCount, every } from './ui.js';

const PAGE_SIZE = 24;
const REFRESH_MS = 3000;

const params = new URLSearchParams(location.search);
let type = Number(params.get('type')) === 2 ? 2 : 1;
let page = Math.max(1, Number(params.get('page')) || 1);
let me = { loginStatus: false };
const cards = new Map(); // room id -> {el, parts, sig}
let lastOk = 0;

function syncUrl() {
  const q = new URLSearchParams();
  if (type !== 1) q.set('type', type);
  if (page !== 1) q.set('page', page);
  const s = q.toString();
  history.replaceState(null, '', s ? `/?${s}` : '/');
}

function renderTabs() {
  const box = $('#type-tabs');
  setChildren(box, ROOM_TYPES.map((t) => {
    const b = h('button', { type: 'button', className: `tab${t.type === type ? ' active' : ''}`, text: t.label, title: t.hint,
      dataset: { testid: `tab-${t.type}` }, attrs: { role: 'tab', 'aria-selected': String(t.type === type) } });
    b.addEventListener('click', () => {
      if (type === t.type) return;
      type = t.type;
      page = 1;
      syncUrl();
      renderTabs();
      clearCards();
      refresh();
    });
    return b;
  }));
}

function clearCards() {
  cards.clear();
  setChildren($('#rooms'), skeletons());
}

function skeletons() {
  return Array.from({ length: 8 }, () => h('div', { className: 'room-card skeleton', attrs: { 'aria-hidden': 'true' } },
    h('div', { className: 'thumb' }), h('div', { className: 'line', style: 'width:70%' }), h('div', { className: 'line', style: 'width:40%' })));
}

/** Live thumbnails change every 20 s at most (the server decodes one no more often). */
const THUMB_MS = 20000;
const thumbEpoch = () => Math.floor(Date.now() / THUMB_MS);

function signature(r) {
  return JSON.stringify([r.roomName, r.covertImg, r.anchorNickName, r.anchorAvatar, r.streaming, r.watchNum, r.type, r.streaming ? thumbEpoch() : 0]);
}

/** The live picture of a streaming room over its cover; removed if the server has none. */
function liveThumb(r) {
  const img = h('img', { className: 'live-thumb', alt: '', decoding: 'async', dataset: { testid: 'live-thumb' } });
  img.addEventListener('error', () => img.remove(), { once: true });
  img.addEventListener('load', () => img.classList.add('loaded'), { once: true });
  img.src = `/live/${encodeURIComponent(r.id)}.jpg?t=${thumbEpoch()}`;
  return img;
}

function buildCard(r) {
  const badge = r.streaming
    ? h('span', { className: 'badge badge-live', text: 'Live', dataset: { testid: 'live-badge' } })
    : h('span', { className: 'badge badge-wait', text: 'Starting soon' });
  const thumb = h('div', { className: 'thumb' },
    cover(r.covertImg, r.roomName, r.id),
    r.streaming ? liveThumb(r) : null,
    badge,
    Number(r.type) === 2 ? h('span', { className: 'badge badge-pk', text: 'PK' }) : null,
    h('span', { className: 'viewers-pill', dataset: { testid: 'card-viewers' }, text: `${formatCount(r.watchNum)} viewer${Number(r.watchNum) === 1 ? '' : 's'}` }));
  const el = h('a', { className: 'room-card', href: `/room.html?id=${encodeURIComponent(r.id)}`, dataset: { testid: 'room-card', roomId: String(r.id) },
    attrs: { 'aria-label': `${r.roomName} by ${r.anchorNickName}${r.streaming ? ', live' : ''}` } },
    thumb,
    h('div', { className: 'room-meta' },
      avatar(r.anchorNickName, r.anchorAvatar, 36),
      h('div', { className: 'room-meta-text' },
        h('span', { className: 'room-title', text: r.roomName, title: r.roomName, dataset: { testid: 'card-title' } }),
        h('span', { className: 'room-anchor', text: r.anchorNickName, dataset: { testid: 'card-anchor' } }))));
  return el;
}

function renderRooms(list) {
  const grid = $('#rooms');
  grid.setAttribute('aria-busy', 'false');
  grid.querySelectorAll('.skeleton').forEach((s) => s.remove());
  const seen = new Set();
  let prev = null;
  for (const r of list) {
    const id = String(r.id);
    seen.add(id);
    const sig = signature(r);
    let c = cards.get(id);
    if (!c || c.sig !== sig) {
      const el = buildCard(r);
      if (c) c.el.replaceWith(el);
      c = { el, sig };
      cards.set(id, c);
    }
    // Keep the server's order, moving only what moved.
    const want = prev ? prev.nextSibling : grid.firstChild;
    if (want !== c.el) grid.insertBefore(c.el, want);
    prev = c.el;
  }
  for (const [id, c] of cards) {
    if (!seen.has(id)) {
      c.el.remove();
      cards.delete(id);
    }
  }
}

function renderEmpty(show) {
  const box = $('#empty');
  box.hidden = !show;
  if (!show) return;
  const kids = [h('h2', { text: page > 1 ? 'Nothing on this page' : `No ${typeLabel(type)} rooms are live right now` }),
    h('p', { text: page > 1 ? 'Rooms ended while you were browsing.' : 'Check back soon — or be the first to go live.' })];
  if (page > 1) {
    const first = h('button', { type: 'button', className: 'btn', text: 'Back to page 1' });
    first.addEventListener('click', () => goPage(1));
    kids.push(first);
  } else if (me.showStartLivingBtn) {
    kids.push(h('a', { className: 'btn btn-primary', href: '/studio.html', text: 'Start streaming' }));
  } else if (!me.loginStatus) {
    const b = h('button', { type: 'button', className: 'btn btn-primary', text: 'Sign up to stream' });
    b.addEventListener('click', () => openAuth('signup'));
    kids.push(b);
  }
  setChildren(box, kids);
}

function goPage(p) {
  page = Math.max(1, p);
  syncUrl();
  clearCards();
  refresh();
  window.scrollTo({ top: 0, behavior: 'smooth' });
}

async function refresh() {
  const want = { type, page };
  try {
    const data = await api.list(type, page, PAGE_SIZE);
    if (want.type !== type || want.page !== page) return; // the visitor moved on meanwhile
    const list = Array.isArray(data.list) ? data.list : [];
    renderRooms(list);
    renderEmpty(list.length === 0);
    const pager = $('#pager');
    pager.hidden = page === 1 && !data.hasNext;
    $('#prev').disabled = page <= 1;
    $('#next').disabled = !data.hasNext;
    $('#page-no').textContent = `Page ${page}`;
    lastOk = Date.now();
    $('#refresh-text').textContent = 'Live list · updates automatically';
  } catch (e) {
    $('#refresh-text').textContent = `Cannot refresh: ${e.message}`;
    if (!lastOk) {
      $('#rooms').setAttribute('aria-busy', 'false');
      $('#rooms').querySelectorAll('.skeleton').forEach((s) => s.remove());
    }
  }
}

async function openAuth(mode) {
  if (await authDialog(mode)) {
    await session(true);
    await init();
  }
}

function renderHero() {
  const box = $('#hero-actions');
  if (!me.loginStatus) {
    const up = h('button', { type: 'button', className: 'btn btn-primary', text: 'Create an account' });
    const inn = h('button', { type: 'button', className: 'btn', text: 'Sign in' });
    up.addEventListener('click', () => openAuth('signup'));
    inn.addEventListener('click', () => openAuth('signin'));
    setChildren(box, up, inn);
  } else if (me.showStartLivingBtn) {
    setChildren(box, h('a', { className: 'btn btn-primary', href: '/studio.html', text: 'Go live now' }));
  } else {
    setChildren(box);
  }
}

async function init() {
  me = await renderTopbar({ onAuthChange: () => init() });
  renderHero();
  if (!cards.size) renderEmpty(false);
}

$('#prev').addEventListener('click', () => goPage(page - 1));
$('#next').addEventListener('click', () => goPage(page + 1));
renderTabs();
clearCards();
init();
every(REFRESH_MS, refresh);
