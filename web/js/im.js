// The IM client (design §3, WebSocket form): one JSON text frame per message,
// {"magic":18673,"code":…,"len":…,"body":"<json string>"}.
//
// - logs in (1001) with a fresh IM token from /im/getImConfig on every connection, with this
//   page's device id (one per tab, so several tabs of one account each keep their chat) and,
//   after a drop, `recover: {epoch, offset}` of the last message it has (design §3.1): the
//   gateway then sends what was missed before live messages, or says `recovered: false`;
// - heartbeats (1004) every `heartbeatMs`; a connection silent for 2.5 heartbeats is dropped;
// - sends chat (1003, bizCode 5555, data = JSON {roomId, content, senderName});
// - ACKs (1005) every delivered message, duplicates included, and shows each message once (by
//   offset within the room's stream, and by msgId); the ACKs of one ACK_FLUSH_MS go out
//   together (see queueAck);
// - reconnects after any drop with exponential backoff (0.5 s … 15 s, jittered).
//
// - a server logout (1002) we did not ask for means a newer login of this tab (or one over the
//   account's connection limit) took over: no automatic reconnect then; `resume()` takes it back.
//
// Events (callbacks): onStatus(state, detail) with state in connecting | online | reconnecting |
// replaced | error | closed; onMessage({msgId, offset, userId, roomId, content, senderName, data});
// onJoined({epoch, offset, recovered}) after each login (recovered: undefined on the first one,
// false when the gap could not be recovered: reload history then); onAccepted(msgId) when the
// gateway took our message; onRecall(msgIds); onNotice(data); onError(slug, code, body).

import { api, ApiError } from './api.js';

export const MAGIC = 18673;
export const APP_ID = 10001;
export const BIZ_CHAT = 5555;
export const BIZ_RECALL = 5556;
export const BIZ_NOTICE = 5557;

/** Danmaku colours every account may use (the server's palette, design §3.2 styles). */
export const PALETTE = [
  ['#ffffff', 'White'], ['#fe0302', 'Red'], ['#ff7204', 'Orange'], ['#ffaa02', 'Amber'],
  ['#ffd302', 'Yellow'], ['#a0ee00', 'Lime'], ['#00cd00', 'Green'], ['#019899', 'Teal'],
  ['#89d5ff', 'Sky'], ['#4266be', 'Blue'], ['#cc0273', 'Magenta'], ['#9b9b9b', 'Grey'],
];
export const DEFAULT_COLOR = '#ffffff';
/** Danmaku modes: flying right to left, or pinned at the top or the bottom for 4 s. */
export const MODES = [['scroll', 'Scroll'], ['top', 'Top'], ['bottom', 'Bottom']];
export const CODE = { FIRST: 1000, LOGIN: 1001, LOGOUT: 1002, BIZ: 1003, HEARTBEAT: 1004, ACK: 1005 };
export const MAX_CONTENT_CHARS = 200;

/** ACKs wait this long to go out together (the gateway re-sends an un-ACKed message after 4 s). */
export const ACK_FLUSH_MS = 200;
/** At most this many ACKs wait; a fuller batch goes out at once. */
const ACK_MAX_BATCH = 64;

const enc = new TextEncoder();

export function frame(code, body) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return JSON.stringify({ magic: MAGIC, code, len: enc.encode(text).length, body: text });
}

/** Resolves the gateway address the API gave against this page (relative paths, 0.0.0.0). */
export function resolveWsUrl(addr) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  if (!addr) return `${scheme}//${location.host}/ws`;
  let url;
  try {
    url = new URL(addr, `${scheme}//${location.host}/`);
  } catch {
    return `${scheme}//${location.host}/ws`;
  }
  if (url.protocol === 'http:') url.protocol = 'ws:';
  if (url.protocol === 'https:') url.protocol = 'wss:';
  if (url.hostname === '0.0.0.0' || url.hostname === '[::]') url.hostname = location.hostname;
  if (location.protocol === 'https:' && url.protocol === 'ws:') url.protocol = 'wss:';
  return url.href;
}

/** A random id for this page (design §3.1 `deviceId`, at most 64 characters). */
export function newDeviceId() {
  const b = new Uint8Array(9);
  crypto.getRandomValues(b);
  return `web-${Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')}`;
}

class SeenSet {
  constructor(cap = 2000) {
    this.cap = cap;
    this.set = new Set();
  }
  /** True when `id` was new (and is now remembered). */
  add(id) {
    if (this.set.has(id)) return false;
    this.set.add(id);
    if (this.set.size > this.cap) this.set.delete(this.set.values().next().value);
    return true;
  }
}

export class ImClient {
  constructor({
    roomId, senderName, heartbeatMs = 30000, onStatus, onMessage, onError, getConfig,
    onJoined, onAccepted, onRecall, onNotice, deviceId,
  } = {}) {
    this.roomId = Number(roomId);
    this.senderName = senderName || '';
    this.heartbeatMs = heartbeatMs;
    this.onStatus = onStatus || (() => {});
    this.onMessage = onMessage || (() => {});
    this.onError = onError || (() => {});
    this.onJoined = onJoined || (() => {});
    this.onAccepted = onAccepted || (() => {});
    this.onRecall = onRecall || (() => {});
    this.onNotice = onNotice || (() => {});
    this.deviceId = deviceId || newDeviceId();
    // The last message of the room's stream this page has: {epoch, offset}.
    this.pos = null;
    this.getConfig = getConfig || ((avoid) => api.imConfig(avoid));
    // A gateway this client just failed to reach, to ask for another one once at once.
    this.avoid = null;
    this.failedOver = false;
    this.seen = new SeenSet();
    this.ws = null;
    this.state = 'closed';
    this.attempt = 0;
    this.stopped = true;
    this.timers = {};
    this.cfg = null;
    this.lastRx = 0;
    this.stats = { sent: 0, delivered: 0, duplicates: 0, acked: 0, reconnects: 0, heartbeats: 0, recovered: 0, gaps: 0 };
    this._onOnline = () => {
      if (!this.stopped && this.state !== 'online') this.reconnectNow();
    };
  }

  setStatus(state, detail) {
    this.state = state;
    this.onStatus(state, detail);
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    window.addEventListener('online', this._onOnline);
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener('online', this._onOnline);
    this.clearTimers();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      try {
        if (ws.readyState === WebSocket.OPEN && this.state === 'online') ws.send(frame(CODE.LOGOUT, { appId: APP_ID, userId: this.cfg?.userId }));
        ws.close(1000, 'bye');
      } catch {
        /* closing anyway */
      }
    }
    this.setStatus('closed');
  }

  clearTimers() {
    for (const t of Object.values(this.timers)) {
      clearTimeout(t);
      clearInterval(t);
    }
    this.timers = {};
  }

  async connect() {
    if (this.stopped) return;
    this.clearTimers();
    this.setStatus(this.attempt ? 'reconnecting' : 'connecting');
    let cfg;
    try {
      cfg = await this.getConfig(this.avoid);
    } catch (e) {
      if (this.stopped) return;
      if (e instanceof ApiError && e.code === 401) {
        this.setStatus('error', 'sign in to chat');
        this.stopped = true;
        return;
      }
      this.scheduleReconnect(e.message);
      return;
    }
    if (this.stopped) return;
    this.cfg = cfg;
    this.replaced = false;
    this.loggedIn = false;
    let ws;
    try {
      ws = new WebSocket(resolveWsUrl(cfg.wsImServerAddress));
    } catch (e) {
      this.scheduleReconnect(String(e.message || e));
      return;
    }
    this.ws = ws;
    // A connection that neither opens nor logs in within 10 s is dropped and retried.
    this.timers.login = setTimeout(() => {
      if (this.ws === ws && this.state !== 'online') this.drop(ws, 'login timed out');
    }, 10000);
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.lastRx = Date.now();
      const login = { appId: APP_ID, userId: cfg.userId, token: cfg.token, roomId: this.roomId, deviceId: this.deviceId };
      if (this.pos) login.recover = { ...this.pos };
      this.recovering = Boolean(this.pos);
      ws.send(frame(CODE.LOGIN, login));
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.lastRx = Date.now();
      this.handle(ws, ev.data);
    };
    ws.onerror = () => {
      /* onclose follows and reconnects; the browser already logs the failure */
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.replaced) {
        this.clearTimers();
        this.setStatus('replaced', 'chat is open in another tab or window');
        return;
      }
      this.retry(ev.reason || `connection closed (${ev.code})`);
    };
  }

  drop(ws, why) {
    if (this.ws !== ws) return;
    this.ws = null;
    try {
      ws.close(4000, why);
    } catch {
      /* already closing */
    }
    this.retry(why);
  }

  /** After a lost connection: a gateway we never got logged in to (it may have just died) is
   * avoided at once, once; otherwise the usual backoff. */
  retry(why) {
    const gw = this.cfg && this.cfg.gatewayId;
    if (!this.loggedIn && !this.failedOver && gw && !this.stopped) {
      this.failedOver = true;
      this.avoid = gw;
      this.clearTimers();
      this.setStatus('reconnecting', { why, inMs: 0 });
      this.connect();
      return;
    }
    this.scheduleReconnect(why);
  }

  scheduleReconnect(why) {
    this.clearTimers();
    if (this.stopped) return;
    const base = Math.min(15000, 500 * 2 ** this.attempt);
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this.attempt++;
    this.stats.reconnects++;
    this.setStatus('reconnecting', { why, inMs: delay });
    this.timers.reconnect = setTimeout(() => this.connect(), delay);
  }

  /** Takes the chat back after another tab replaced this one. */
  resume() {
    this.replaced = false;
    this.attempt = 0;
    if (this.stopped) this.start();
    else this.reconnectNow();
  }

  reconnectNow() {
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      try {
        ws.close(4000, 'reconnect');
      } catch {
        /* ignore */
      }
    }
    this.clearTimers();
    this.connect();
  }

  handle(ws, text) {
    let f;
    let body = {};
    try {
      f = JSON.parse(text);
      if (typeof f.body === 'string' && f.body.trim()) body = JSON.parse(f.body);
      else if (f.body && typeof f.body === 'object') body = f.body;
    } catch {
      console.warn('im: unreadable frame dropped');
      return;
    }
    if (body && body.error) {
      this.onErrorFrame(ws, f.code, body.error, body);
      return;
    }
    switch (f.code) {
      case CODE.LOGIN:
        if (String(body.data) === 'true') this.onLoggedIn(ws, body);
        else this.onErrorFrame(ws, f.code, 'login refused');
        break;
      case CODE.HEARTBEAT:
        break;
      case CODE.BIZ:
        // The answer to our own chat message: the gateway took it (no offset: not a delivery).
        if (body.offset == null && String(body.data) === 'true') {
          if (body.msgId != null) {
            this.seen.add(String(body.msgId));
            this.onAccepted(String(body.msgId));
          }
          break;
        }
        this.onDelivery(ws, body);
        break;
      case CODE.LOGOUT:
        // Unrequested: a newer session of this user in this room replaced us.
        this.replaced = true;
        break;
      default:
        break;
    }
  }

  onLoggedIn(ws, body) {
    clearTimeout(this.timers.login);
    this.attempt = 0;
    this.loggedIn = true;
    this.failedOver = false;
    this.avoid = null;
    const epoch = body.epoch != null ? String(body.epoch) : null;
    const offset = body.offset != null ? Number(body.offset) : null;
    let recovered;
    if (this.recovering) {
      recovered = body.recovered === true;
      if (recovered) this.stats.recovered++;
      else this.stats.gaps++;
    }
    // Recovered: the missed messages follow and move `pos` on. Otherwise (first login, or a gap
    // that could not be recovered) the stream continues from the position the gateway gave.
    if (!recovered && epoch != null && offset != null) this.pos = { epoch, offset };
    this.recovering = false;
    this.setStatus('online');
    this.onJoined({ epoch, offset, recovered });
    // The server's gap when /im/getImConfig tells it (`heartbeatSecs`), else design §3's 30 s.
    const gap = Number(this.cfg.heartbeatSecs) > 0 ? Math.min(this.heartbeatMs, this.cfg.heartbeatSecs * 1000) : this.heartbeatMs;
    this.timers.heartbeat = setInterval(() => {
      if (this.ws !== ws || ws.readyState !== WebSocket.OPEN) return;
      if (Date.now() - this.lastRx > gap * 2.5) {
        this.drop(ws, 'no reply to heartbeats');
        return;
      }
      ws.send(frame(CODE.HEARTBEAT, { appId: APP_ID, userId: this.cfg.userId }));
      this.stats.heartbeats++;
    }, gap);
  }

  onErrorFrame(ws, code, slug, body = {}) {
    if (slug === 'banned' || slug === 'suspended') {
      if (code === CODE.BIZ) {
        this.onError(slug, code, body);
        return;
      }
      // Kept out of this room's chat (or of every chat): reconnecting would be refused again.
      this.stopped = true;
      this.clearTimers();
      if (this.ws === ws) this.ws = null;
      try {
        ws.close(1000, slug);
      } catch {
        /* closing anyway */
      }
      this.setStatus('error', slug === 'banned' ? 'banned from this room' : 'account suspended');
      this.onError(slug, code, body);
      return;
    }
    if (code === CODE.LOGIN) {
      // Bad or expired token: fetch a new one and try again (with backoff).
      this.drop(ws, `login refused: ${slug}`);
      return;
    }
    if (code === CODE.BIZ) this.onError(slug, code, body);
    else console.warn(`im: the gateway refused a ${code} frame: ${slug}`);
  }

  // ACKs of the deliveries of one ACK_FLUSH_MS are sent together, in one task: the browser writes
  // them in one segment, so a busy room costs the gateway one read per viewer per flush instead
  // of one per message. Still one 1005 frame per msgId, in the form the gateway reads fastest.
  queueAck(ws, msgId) {
    if (this.ackWs !== ws) {
      this.ackWs = ws;
      this.ackIds = [];
    }
    this.ackIds.push(msgId);
    if (this.ackIds.length >= ACK_MAX_BATCH) this.flushAcks();
    else if (!this.timers.ack) this.timers.ack = setTimeout(() => this.flushAcks(), ACK_FLUSH_MS);
  }

  flushAcks() {
    clearTimeout(this.timers.ack);
    delete this.timers.ack;
    const ws = this.ackWs;
    const ids = this.ackIds || [];
    this.ackIds = [];
    // ACKs of a connection that is gone are moot: its pending messages went with it.
    if (!ws || ws !== this.ws || ws.readyState !== WebSocket.OPEN) return;
    for (const msgId of ids) {
      ws.send(frame(CODE.ACK, { appId: APP_ID, userId: this.cfg.userId, msgId }));
      this.stats.acked++;
    }
  }

  onDelivery(ws, body) {
    const msgId = body.msgId != null ? String(body.msgId) : '';
    if (msgId) this.queueAck(ws, msgId);
    const offset = body.offset != null ? Number(body.offset) : null;
    const epoch = body.epoch != null ? String(body.epoch) : null;
    if (offset != null && epoch != null) {
      // Within one epoch, offsets only grow: anything at or below ours was shown already.
      if (this.pos && this.pos.epoch === epoch && offset <= this.pos.offset) {
        this.stats.duplicates++;
        return;
      }
      this.pos = { epoch, offset };
    }
    if (msgId && !this.seen.add(msgId)) {
      this.stats.duplicates++;
      return;
    }
    let data = body.data;
    if (typeof data === 'string') {
      try {
        data = JSON.parse(data);
      } catch {
        data = { content: data };
      }
    }
    if (!data || typeof data !== 'object') return;
    const roomId = data.roomId != null ? Number(data.roomId) : body.roomId != null ? Number(body.roomId) : this.roomId;
    if (roomId !== this.roomId) return;
    const biz = Number(body.bizCode ?? BIZ_CHAT);
    if (biz === BIZ_RECALL) {
      if (Array.isArray(data.msgIds)) this.onRecall(data.msgIds.map(String));
      return;
    }
    if (biz === BIZ_NOTICE) {
      this.onNotice(data);
      return;
    }
    if (typeof data.content !== 'string') return;
    this.stats.delivered++;
    this.onMessage({
      msgId,
      offset,
      data,
      userId: body.userId != null ? Number(body.userId) : null,
      roomId,
      content: data.content,
      // A name set by the server (if it ever adds one) wins over the one the sender claimed.
      senderName: [body.senderName, body.nickName, data.senderName].find((x) => typeof x === 'string' && x) || '',
    });
  }

  /** Sends a chat message; false when not connected (nothing was sent). */
  /** Sends a chat message with an optional danmaku style `{color, mode}`; false when not
   * connected (nothing was sent). */
  send(content, style = {}) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || this.state !== 'online') return false;
    // The gateway stamps the account's name and rebuilds the data from these fields.
    const fields = { roomId: this.roomId, content };
    if (style.color && style.color !== DEFAULT_COLOR) fields.color = style.color;
    if (style.mode && style.mode !== 'scroll') fields.mode = style.mode;
    const data = JSON.stringify(fields);
    ws.send(frame(CODE.BIZ, { appId: APP_ID, userId: this.cfg.userId, token: this.cfg.token, bizCode: BIZ_CHAT, data }));
    this.stats.sent++;
    return true;
  }
}
