// Moderation in the browser: the API calls of design §3.2, the studio's moderation panel (slow
// mode, blocked words, room admins, muted and banned users, the audit log) and the menu behind a
// chat message (delete, mute 10 min / 1 h / this stream, ban) for the anchor and room admins.
// Every piece of user text goes through textContent (ui.js's h()).
import { post, get, ApiError } from './api.js';
import { h, setChildren, modal, toast, every } from './ui.js';

export const modApi = {
  role: (roomId) => get('/living/moderation/role', { roomId }),
  state: (roomId) => get('/living/moderation/state', { roomId }),
  log: (roomId, limit = 50) => get('/living/moderation/log', { roomId, limit }),
  mute: (roomId, userId, seconds) => post('/living/moderation/mute', { roomId, userId, seconds }),
  unmute: (roomId, userId) => post('/living/moderation/unmute', { roomId, userId }),
  ban: (roomId, userId) => post('/living/moderation/ban', { roomId, userId }),
  unban: (roomId, userId) => post('/living/moderation/unban', { roomId, userId }),
  remove: (roomId, msgIds) => post('/living/moderation/delete', { roomId, msgIds }),
  slowMode: (roomId, seconds) => post('/living/moderation/slowMode', { roomId, seconds }),
  words: (roomId, add, remove) => post('/living/moderation/words', { roomId, add, remove }),
  admins: (roomId, userId, admin) => post('/living/moderation/admins', { roomId, userId, admin }),
};

/** Whether the signed-in user may moderate the room (anchor, room admin or operator). */
export async function canModerate(roomId) {
  try {
    const r = await modApi.role(roomId);
    return Boolean(r.role);
  } catch {
    return false;
  }
}

/** Longest blocked word (the server checks it too). */
export const MAX_WORD_CHARS = 50;

export const SLOW_MODE_CHOICES = [0, 3, 5, 10, 30, 60, 120, 300];

function secondsLabel(s) {
  if (!s) return 'Off';
  return s < 60 ? `${s} s` : `${s / 60} min`;
}

function when(ms) {
  return new Date(Number(ms)).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

function untilText(untilMs) {
  return Number(untilMs) === 0 ? 'until the stream ends' : `until ${when(untilMs)}`;
}

/** The text of a 5557 notice, or '' for a kind this page does not know. */
export function noticeText(d) {
  const who = d.nickName || (d.userId != null ? `user ${d.userId}` : 'someone');
  switch (d.kind) {
    case 'slow_mode_on': return `Slow mode is on: one message every ${secondsLabel(Number(d.seconds))}.`;
    case 'slow_mode_off': return 'Slow mode is off.';
    case 'user_muted': return `${who} was muted ${untilText(d.untilMs)}.`;
    case 'user_banned': return `${who} was banned from this chat.`;
    default: return '';
  }
}

async function act(label, fn) {
  try {
    await fn();
    toast(label, 'ok');
    return true;
  } catch (e) {
    toast(e instanceof ApiError ? e.message : String(e), 'error', 5000);
    return false;
  }
}

/** The "⋯" button of a chat message, opening its moderation menu. */
export function messageMenuButton({ roomId, userId, name, msgId, content }) {
  const b = h('button', { type: 'button', className: 'chat-mod-btn', text: '⋯', title: 'Moderate', dataset: { testid: 'msg-menu' },
    attrs: { 'aria-label': `Moderate ${name || `user ${userId}`}` } });
  b.addEventListener('click', (e) => {
    e.stopPropagation();
    openMessageMenu({ roomId, userId, name, msgId, content });
  });
  return b;
}

export function openMessageMenu({ roomId, userId, name, msgId, content }) {
  const who = name || `user ${userId}`;
  const item = (text, testid, run, danger = false) => {
    const btn = h('button', { type: 'button', className: `btn btn-block${danger ? ' btn-danger' : ''}`, text, dataset: { testid } });
    btn.addEventListener('click', async () => {
      btn.disabled = true;
      if (await run()) m.close();
      btn.disabled = false;
    });
    return btn;
  };
  const body = h('div', { className: 'mod-menu' },
    h('p', { className: 'muted mod-quote', text: `${who}: ${content}` }),
    item('Delete this message', 'mod-delete', () => act('Message deleted', () => modApi.remove(roomId, [msgId]))),
    item('Mute 10 minutes', 'mod-mute-10m', () => act(`${who} is muted for 10 minutes`, () => modApi.mute(roomId, userId, 600))),
    item('Mute 1 hour', 'mod-mute-1h', () => act(`${who} is muted for 1 hour`, () => modApi.mute(roomId, userId, 3600))),
    item('Mute for this stream', 'mod-mute-stream', () => act(`${who} is muted until the stream ends`, () => modApi.mute(roomId, userId, 0))),
    item('Ban from this chat', 'mod-ban', () => act(`${who} is banned`, () => modApi.ban(roomId, userId)), true));
  const m = modal(`Moderate ${who}`, body, { className: 'mod-dialog' });
  return m;
}

const ACTION_TEXT = {
  mute: 'muted', unmute: 'unmuted', ban: 'banned', unban: 'unbanned', delete: 'deleted messages',
  slow_mode: 'set slow mode', words: 'changed blocked words', admins: 'changed room admins', close_room: 'closed the room',
};

function describe(entry, names) {
  const name = (id) => names[String(id)] || `user ${id}`;
  const d = entry.details || {};
  switch (entry.action) {
    case 'mute': return `muted ${name(entry.targetId)} ${untilText(d.untilMs)}`;
    case 'slow_mode': return `set slow mode to ${secondsLabel(Number(d.seconds))}`;
    case 'words': {
      const parts = [];
      if (d.added && d.added.length) parts.push(`added ${d.added.join(', ')}`);
      if (d.removed && d.removed.length) parts.push(`removed ${d.removed.join(', ')}`);
      return `blocked words: ${parts.join('; ') || 'no change'}`;
    }
    case 'admins': return `${d.admin ? 'appointed' : 'dismissed'} ${name(entry.targetId)} as room admin`;
    case 'delete': return `deleted ${(d.msgIds || []).length} message(s)`;
    default: return `${ACTION_TEXT[entry.action] || entry.action}${entry.targetId ? ` ${name(entry.targetId)}` : ''}`;
  }
}

/**
 * The studio's moderation panel for `roomId`: slow mode, blocked words, room admins (anchor
 * only), muted and banned users, the audit log. Refreshes itself every 5 s. Returns {stop}.
 */
export function moderationPanel(root, roomId) {
  const slow = h('select', { dataset: { testid: 'slow-mode' }, attrs: { 'aria-label': 'Slow mode' } },
    SLOW_MODE_CHOICES.map((s) => h('option', { value: String(s), text: secondsLabel(s) })));
  const wordInput = h('input', { type: 'text', maxLength: 2000, placeholder: 'Words to block, separated by commas', dataset: { testid: 'word-input' },
    attrs: { 'aria-label': 'Words to block' } });
  const wordAdd = h('button', { type: 'submit', className: 'btn btn-small', text: 'Block', dataset: { testid: 'word-add' } });
  const wordForm = h('form', { className: 'mod-row' }, wordInput, wordAdd);
  const wordList = h('div', { className: 'chips', dataset: { testid: 'word-list' } });
  const adminInput = h('input', { type: 'number', min: '1', placeholder: 'User id', dataset: { testid: 'admin-input' }, attrs: { 'aria-label': 'User id of the new room admin' } });
  const adminAdd = h('button', { type: 'submit', className: 'btn btn-small', text: 'Appoint', dataset: { testid: 'admin-add' } });
  const adminForm = h('form', { className: 'mod-row' }, adminInput, adminAdd);
  const adminList = h('ul', { className: 'mod-list', dataset: { testid: 'admin-list' } });
  const mutedList = h('ul', { className: 'mod-list', dataset: { testid: 'muted-list' } });
  const bannedList = h('ul', { className: 'mod-list', dataset: { testid: 'banned-list' } });
  const logBody = h('tbody', { dataset: { testid: 'audit-log' } });
  const err = h('p', { className: 'form-error', attrs: { role: 'alert' } });
  let state = null;

  const render = (st, log) => {
    state = st;
    if (document.activeElement !== slow) slow.value = String(SLOW_MODE_CHOICES.includes(st.slowModeSecs) ? st.slowModeSecs : 0);
    const names = { ...(st.names || {}), ...(log.names || {}) };
    const name = (id) => names[String(id)] || `user ${id}`;
    setChildren(wordList, st.words.length ? st.words.map((w) => {
      const x = h('button', { type: 'button', className: 'chip-x', text: '×', attrs: { 'aria-label': `Unblock ${w}` } });
      x.addEventListener('click', () => change(() => modApi.words(roomId, [], [w])));
      return h('span', { className: 'chip', dataset: { testid: 'word', word: w } }, h('span', { text: w }), x);
    }) : h('span', { className: 'muted', text: 'No blocked words.' }));
    const row = (id, extra, label, run, testid) => {
      const b = h('button', { type: 'button', className: 'btn btn-small', text: label, dataset: { testid } });
      b.addEventListener('click', () => change(run));
      return h('li', { dataset: { userId: String(id) } }, h('span', { className: 'who', text: name(id) }), h('span', { className: 'muted', text: ` #${id}${extra}` }), b);
    };
    setChildren(adminList, st.admins.length ? st.admins.map((id) => row(id, '', 'Dismiss', () => modApi.admins(roomId, id, false), 'admin-dismiss'))
      : h('li', { className: 'muted', text: 'No room admins.' }));
    setChildren(mutedList, st.muted.length ? st.muted.map((m) => row(m.userId, ` · ${untilText(m.untilMs)}`, 'Unmute', () => modApi.unmute(roomId, m.userId), 'unmute'))
      : h('li', { className: 'muted', text: 'Nobody is muted.' }));
    setChildren(bannedList, st.banned.length ? st.banned.map((id) => row(id, '', 'Unban', () => modApi.unban(roomId, id), 'unban'))
      : h('li', { className: 'muted', text: 'Nobody is banned.' }));
    adminForm.hidden = st.you !== 'anchor';
    setChildren(logBody, (log.list || []).map((e) => h('tr', { dataset: { testid: 'audit-row', action: e.action } },
      h('td', { text: when(e.atMs) }),
      h('td', { text: `${name(e.actorId)} (${e.actorRole})` }),
      h('td', { text: describe(e, names) }))));
    if (!(log.list || []).length) setChildren(logBody, h('tr', {}, h('td', { colSpan: 3, className: 'muted', text: 'Nothing yet.' })));
  };

  const refresh = async () => {
    const [st, log] = await Promise.all([modApi.state(roomId), modApi.log(roomId, 50)]);
    render(st, log);
  };

  const change = async (run) => {
    err.textContent = '';
    try {
      await run();
      await refresh();
      return true;
    } catch (e) {
      err.textContent = e instanceof ApiError ? e.message : String(e);
      return false;
    }
  };

  slow.addEventListener('change', () => change(() => modApi.slowMode(roomId, Number(slow.value))));
  wordForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const words = wordInput.value.split(/[,\n]/).map((w) => w.trim()).filter(Boolean);
    if (!words.length) return;
    const long = words.find((w) => [...w].length > MAX_WORD_CHARS);
    if (long) {
      err.textContent = `Blocked words are at most ${MAX_WORD_CHARS} characters (“${[...long].slice(0, 12).join('')}…” is longer).`;
      return;
    }
    if (await change(() => modApi.words(roomId, words, []))) wordInput.value = '';
  });
  adminForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const id = Number(adminInput.value);
    if (!(id > 0)) {
      err.textContent = 'Enter the user id of the new room admin.';
      return;
    }
    if (await change(() => modApi.admins(roomId, id, true))) adminInput.value = '';
  });

  const section = (title, ...children) => h('div', { className: 'mod-section' }, h('h3', { text: title }), ...children);
  setChildren(root, h('section', { className: 'card mod-panel', dataset: { testid: 'moderation-panel' } },
    h('div', { className: 'card-head' }, h('h2', { text: 'Moderation' }),
      h('span', { className: 'muted', text: 'Rules reach every viewer within a second; every action is logged.' })),
    err,
    section('Slow mode', h('label', { className: 'mod-row' }, h('span', { text: 'One message per viewer every' }), slow)),
    section('Blocked words', h('p', { className: 'field-hint', text: 'Up to 1,000 words of up to 50 characters; upper/lower case and full/half width count as the same.' }), wordForm, wordList),
    section('Room admins', h('p', { className: 'field-hint', text: 'Room admins can delete messages, mute and ban in your room.' }), adminForm, adminList),
    section('Muted', mutedList),
    section('Banned', bannedList),
    section('Audit log', h('table', { className: 'mod-log' }, h('thead', {}, h('tr', {}, h('th', { text: 'When' }), h('th', { text: 'Who' }), h('th', { text: 'What' }))), logBody))));
  const stop = every(5000, refresh);
  return { stop, refresh, get state() { return state; } };
}
