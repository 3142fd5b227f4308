// The chat panel of a room (viewer page and streamer console): message list, status, send box
// (Enter sends) and the IM client behind it. Every piece of user text goes through textContent.
import { h, setChildren, authDialog, session } from './ui.js';
import { ImClient, MAX_CONTENT_CHARS, PALETTE, MODES, DEFAULT_COLOR } from './im.js';
import { get } from './api.js';
import { messageMenuButton, noticeText } from './moderation.js';

/** Messages of earlier chat shown when the page opens (design §3.1: at most 100). */
const HISTORY_ON_JOIN = 50;

const MAX_LINES = 300;

const ERRORS = {
  rate_limited: 'You are sending messages too quickly. Slow down a little.',
  content_too_long: `Messages are limited to ${MAX_CONTENT_CHARS} characters.`,
  empty_content: 'Type something first.',
  wrong_room: 'That message was for another room.',
  no_room: 'Not in a room.',
  not_logged_in: 'The chat connection is not signed in yet.',
  bad_biz_code: 'The chat server did not understand that message.',
  bad_json: 'The chat server did not understand that message.',
  internal: 'The chat server had a problem; try again.',
  unavailable: 'The chat server could not take that message just now; try again.',
  muted: 'You are muted in this room for now.',
  banned: 'You are banned from this room\'s chat.',
  slow_mode: 'Slow mode is on: wait a little before your next message.',
  blocked_word: 'That message contains a blocked word.',
  suspended: 'This account is suspended.',
};

const STATUS_TEXT = {
  connecting: 'Connecting…',
  online: 'Connected',
  reconnecting: 'Reconnecting…',
  replaced: 'Open elsewhere',
  error: 'Unavailable',
  closed: 'Closed',
};

// `moderation` (the anchor's console, or a room admin): each message of someone else gets a
// menu (delete, mute, ban; see moderation.js).
export function createChat(root, { roomId, me, anchorId, danmaku, title = 'Stream chat', heartbeatMs, moderation } = {}) {
  const status = h('span', { className: 'chat-status', dataset: { testid: 'chat-status', state: 'closed' }, text: '' });
  const list = h('div', { className: 'chat-list', attrs: { role: 'log', 'aria-live': 'polite', 'aria-label': 'Chat messages' }, dataset: { testid: 'chat-list' } });
  const jump = h('button', { type: 'button', className: 'btn btn-small btn-primary chat-new', text: 'New messages ↓', hidden: true });
  const input = h('input', {
    type: 'text', maxLength: MAX_CONTENT_CHARS, placeholder: 'Send a message', autocomplete: 'off', enterKeyHint: 'send',
    dataset: { testid: 'chat-input' }, attrs: { 'aria-label': 'Chat message' },
  });
  const send = h('button', { type: 'submit', className: 'btn btn-primary', text: 'Chat', dataset: { testid: 'chat-send' } });
  // The danmaku style of one's own messages (pages with danmaku only): a palette colour and a mode.
  const colorPick = h('select', { className: 'chat-style-color', dataset: { testid: 'danmaku-color' }, attrs: { 'aria-label': 'Danmaku colour', title: 'Danmaku colour' } },
    ...PALETTE.map(([value, name]) => h('option', { value, text: `● ${name}` })));
  const modePick = h('select', { className: 'chat-style-mode', dataset: { testid: 'danmaku-mode' }, attrs: { 'aria-label': 'Danmaku position', title: 'Danmaku position' } },
    ...MODES.map(([value, name]) => h('option', { value, text: name })));
  const paintPick = () => {
    colorPick.style.color = colorPick.value;
  };
  colorPick.addEventListener('change', paintPick);
  paintPick();
  const style = () => ({ color: colorPick.value || DEFAULT_COLOR, mode: modePick.value || 'scroll' });
  const form = h('form', { className: 'chat-form', autocomplete: 'off' },
    danmaku ? h('div', { className: 'chat-style' }, colorPick, modePick) : null, input, send);
  const note = h('p', { className: 'chat-note', attrs: { role: 'status' } });
  const head = h('div', { className: 'chat-head' }, h('h2', { text: title }), status);
  list.append(jump);

  let client = null;
  let disabledReason = '';
  let pending = []; // own messages sent and not answered yet, oldest first (answers come in order)
  let historyShown = false;

  const nearBottom = () => list.scrollHeight - list.scrollTop - list.clientHeight < 60;
  const scrollDown = () => {
    list.scrollTop = list.scrollHeight;
    jump.hidden = true;
  };
  list.addEventListener('scroll', () => {
    if (nearBottom()) jump.hidden = true;
  });
  jump.addEventListener('click', scrollDown);

  function addLine(node) {
    const stick = nearBottom();
    list.insertBefore(node, jump);
    let lines = list.querySelectorAll('.chat-line');
    for (let i = 0; lines.length - i > MAX_LINES; i++) lines[i].remove();
    if (stick) scrollDown();
    else jump.hidden = false;
  }

  function line({ name, userId, content, self = false, msgId, earlier = false }) {
    const isAnchor = anchorId != null && userId != null && Number(userId) === Number(anchorId);
    const who = h('span', { className: 'who', text: name || (userId != null ? `user ${userId}` : 'someone') });
    who.style.color = `hsl(${(Number(userId) * 67) % 360} 80% 72%)`;
    const cls = ['chat-line', self ? 'self' : '', earlier ? 'earlier' : ''].filter(Boolean).join(' ');
    const menu = moderation && msgId && !self && !isAnchor && userId != null
      ? messageMenuButton({ roomId, userId: Number(userId), name, msgId, content }) : null;
    return h('div', { className: cls, dataset: { testid: 'chat-line', msgId: msgId || '' } },
      isAnchor ? h('span', { className: 'role', text: 'HOST', title: 'Streamer' }) : null,
      who,
      h('span', { className: 'content', text: content }),
      menu);
  }

  function addSystem(text, testid) {
    addLine(h('div', { className: 'chat-line system', text, dataset: testid ? { testid } : {} }));
  }

  const shown = (msgId) => Boolean(msgId) && list.querySelector(`[data-msg-id="${CSS.escape(msgId)}"]`);

  // Earlier chat up to `offset` (the position the gateway gave at login), oldest first: on the
  // first login it goes above whatever arrived live since; after a gap that could not be
  // recovered it fills in what this page did not show, after a note that some may be missing.
  async function loadHistory(offset, gap) {
    let page;
    try {
      page = await get('/im/history', { roomId, limit: HISTORY_ON_JOIN, before: offset + 1 });
    } catch (e) {
      if (!gap) addSystem(`Earlier chat is not available (${e.message}).`);
      return;
    }
    const items = (page.list || []).filter((m) => !shown(String(m.msgId)));
    if (gap) {
      addSystem('Reconnected. Some messages may be missing.', 'chat-gap');
      for (const m of items) addLine(line({ name: m.senderName, userId: m.userId, content: m.content, msgId: String(m.msgId) }));
      return;
    }
    if (!items.length) return;
    const first = list.querySelector('.chat-line:not(.system):not(.earlier)') || jump;
    const stick = nearBottom();
    list.insertBefore(h('div', { className: 'chat-line system earlier-mark', text: 'Earlier chat', dataset: { testid: 'chat-earlier' } }), first);
    for (const m of items) {
      list.insertBefore(line({ name: m.senderName, userId: m.userId, content: m.content, msgId: String(m.msgId), earlier: true }), first);
    }
    if (stick) scrollDown();
  }

  function setStatus(state, detail) {
    status.dataset.state = state;
    status.textContent = STATUS_TEXT[state] || state;
    if (state === 'reconnecting' && detail && detail.inMs != null) status.title = `${detail.why || 'dropped'}; retrying in ${Math.ceil(detail.inMs / 100) / 10} s`;
    else status.title = typeof detail === 'string' ? detail : '';
    if (state === 'replaced') {
      const here = h('button', { type: 'button', className: 'btn btn-small', text: 'Use chat here' });
      here.addEventListener('click', () => {
        note.textContent = '';
        client.resume();
      });
      setChildren(note, 'Chat is open in another tab or window. ', here);
    } else if (state === 'online' && note.querySelector('button')) {
      note.textContent = '';
    }
    refreshForm();
  }

  function refreshForm() {
    const online = client && client.state === 'online';
    const blocked = Boolean(disabledReason);
    input.disabled = blocked;
    send.disabled = blocked || !online;
    if (blocked) input.placeholder = disabledReason;
    else input.placeholder = online ? 'Send a message' : 'Connecting to chat…';
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || !client) return;
    if ([...text].length > MAX_CONTENT_CHARS) {
      note.textContent = ERRORS.content_too_long;
      return;
    }
    const st = style();
    if (!client.send(text, danmaku ? st : {})) {
      note.textContent = 'Not connected to chat yet; your message was kept.';
      return;
    }
    note.textContent = '';
    input.value = '';
    const node = line({ name: me.nickName, userId: me.userId, content: text, self: true });
    node.classList.add('pending');
    pending.push({ node, text, at: Date.now() });
    if (pending.length > 50) pending.shift();
    addLine(node);
    scrollDown();
    if (danmaku) danmaku.add(text, { self: true, color: st.color, mode: st.mode });
  });

  if (!me.loginStatus) {
    const signIn = h('button', { type: 'button', className: 'btn btn-primary btn-small', text: 'Sign in' });
    signIn.addEventListener('click', async () => {
      if (await authDialog('signin')) {
        await session(true);
        location.reload();
      }
    });
    setChildren(root, head, list, h('div', { className: 'chat-signin' }, h('span', { text: 'Sign in to read and send chat.' }), signIn));
    status.dataset.state = 'closed';
    status.textContent = 'Signed out';
    addSystem('Welcome! Chat needs an account: sign in to join the conversation.');
    return { stop() {}, setDisabled() {}, addSystem, client: null };
  }

  setChildren(root, head, list, form, note);
  addSystem('Welcome to the chat. Be kind.');
  client = new ImClient({
    roomId,
    senderName: me.nickName,
    heartbeatMs,
    onStatus: setStatus,
    onMessage(m) {
      // This connection never gets its own messages back (its other tabs do, and show them).
      if (shown(m.msgId)) return;
      addLine(line({ name: m.senderName, userId: m.userId, content: m.content, msgId: m.msgId }));
      if (danmaku) danmaku.add(m.content, { color: m.data && m.data.color, mode: m.data && m.data.mode });
    },
    onJoined({ offset, recovered }) {
      if (offset == null) return;
      if (!historyShown) {
        historyShown = true;
        loadHistory(offset, false);
      } else if (recovered === false) {
        loadHistory(offset, true);
      }
    },
    onAccepted(msgId) {
      // Answers come in the order the messages were sent.
      const p = pending.shift();
      if (!p) return;
      p.node.classList.remove('pending');
      p.node.dataset.msgId = msgId;
    },
    onRecall(msgIds) {
      for (const id of msgIds) {
        const node = shown(id);
        if (node) {
          node.classList.add('recalled');
          node.querySelector('.content').textContent = 'message deleted';
          node.querySelector('.chat-mod-btn')?.remove();
        }
      }
    },
    onNotice(data) {
      const text = noticeText(data);
      if (text) addLine(h('div', { className: 'chat-line system mod-notice', dataset: { testid: 'chat-notice', kind: String(data.kind || '') }, text }));
    },
    onError(slug, code, body = {}) {
      note.textContent = ERRORS[slug] || `Chat error: ${slug}`;
      // For how long (design §3.2): muted until a time, or slow mode / rate for a while.
      if (slug === 'muted') {
        const until = Number(body.untilMs);
        note.textContent = until > 0
          ? `You are muted in this room until ${new Date(until).toLocaleTimeString()}.`
          : 'You are muted in this room until the stream ends.';
      } else if ((slug === 'slow_mode' || slug === 'rate_limited') && Number(body.retryAfterMs) > 0) {
        const s = Math.ceil(Number(body.retryAfterMs) / 1000);
        note.textContent = `${ERRORS[slug]} You can send again in ${s} s.`;
      }
      note.dataset.error = slug;
      if (slug === 'banned' || slug === 'suspended') {
        disabledReason = ERRORS[slug];
        refreshForm();
      }
      // The error answers our oldest unanswered message (if one was just sent).
      const first = pending[0];
      if (first && Date.now() - first.at < 10000) {
        pending.shift();
        first.node.classList.remove('pending');
        first.node.classList.add('failed');
      }
    },
  });
  client.start();
  refreshForm();
  if (typeof window !== 'undefined') window.__imClient = client; // for tests and debugging

  return {
    client,
    addSystem,
    stop() {
      client.stop();
    },
    setDisabled(reason) {
      disabledReason = reason || '';
      refreshForm();
    },
  };
}
