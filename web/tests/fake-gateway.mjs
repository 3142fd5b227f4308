// A scripted IM gateway for the client's protocol test: a minimal RFC 6455 server (text frames
// only) speaking the JSON form of design §3. It records every frame a client sends and lets the
// test push frames, refuse logins and drop connections.
import http from 'node:http';
import { createHash } from 'node:crypto';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

function encodeText(str) {
  const payload = Buffer.from(str, 'utf8');
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x81, n]) : n < 65536 ? Buffer.from([0x81, 126, n >> 8, n & 255]) : null;
  if (!head) throw new Error('frame too large for the fake gateway');
  return Buffer.concat([head, payload]);
}

export class FakeGateway {
  constructor() {
    this.frames = []; // {conn, at, code, body (parsed), raw}
    this.conns = [];
    this.connectedAt = [];
    this.refuseLogins = 0;
    // The room's stream as this fake tells it: one epoch, offsets of what it delivered.
    this.epoch = 'fake-1';
    this.top = 0;
    this.recoverAnswer = true;
    this.server = http.createServer((req, res) => {
      res.writeHead(404);
      res.end();
    });
    this.server.on('upgrade', (req, socket) => this.upgrade(req, socket));
  }

  async listen() {
    await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
    return `ws://127.0.0.1:${this.server.address().port}/ws`;
  }

  async close() {
    for (const c of this.conns) c.socket.destroy();
    await new Promise((r) => this.server.close(r));
  }

  upgrade(req, socket) {
    const key = req.headers['sec-websocket-key'];
    const accept = createHash('sha1').update(key + GUID).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    const conn = { id: this.conns.length, socket, buf: Buffer.alloc(0), open: true };
    this.conns.push(conn);
    this.connectedAt.push(Date.now());
    socket.on('data', (d) => {
      conn.buf = Buffer.concat([conn.buf, d]);
      this.read(conn);
    });
    socket.on('close', () => {
      conn.open = false;
    });
    socket.on('error', () => {
      conn.open = false;
    });
  }

  read(conn) {
    for (;;) {
      const b = conn.buf;
      if (b.length < 2) return;
      const op = b[0] & 0x0f;
      let len = b[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      if (b.length < off + 4 + len) return;
      const mask = b.subarray(off, off + 4);
      const payload = Buffer.from(b.subarray(off + 4, off + 4 + len));
      for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
      conn.buf = b.subarray(off + 4 + len);
      if (op === 0x8) {
        conn.open = false;
        conn.socket.end(Buffer.from([0x88, 0]));
        return;
      }
      if (op === 0x9) {
        conn.socket.write(Buffer.concat([Buffer.from([0x8a, payload.length]), payload]));
        continue;
      }
      if (op !== 0x1) continue;
      this.onText(conn, payload.toString('utf8'));
    }
  }

  onText(conn, raw) {
    const f = JSON.parse(raw);
    let body = {};
    try {
      body = typeof f.body === 'string' && f.body ? JSON.parse(f.body) : f.body || {};
    } catch {
      body = { unparsable: f.body };
    }
    this.frames.push({ conn: conn.id, at: Date.now(), code: f.code, magic: f.magic, len: f.len, bodyText: f.body, body });
    if (f.code === 1001) {
      if (this.refuseLogins > 0) {
        this.refuseLogins--;
        this.send(conn, 1001, { appId: 10001, userId: body.userId, data: 'false', error: 'bad_token' });
        setTimeout(() => conn.socket.destroy(), 5);
      } else {
        const reply = { appId: 10001, userId: body.userId, data: 'true', roomId: body.roomId, epoch: this.epoch, offset: this.top };
        if (body.recover) reply.recovered = this.recoverAnswer;
        this.send(conn, 1001, reply);
      }
    } else if (f.code === 1004) {
      this.send(conn, 1004, { appId: 10001, userId: body.userId, data: 'true' });
    }
  }

  send(conn, code, body) {
    const text = JSON.stringify(body);
    const frame = JSON.stringify({ magic: 18673, code, len: Buffer.byteLength(text), body: text });
    if (conn.open) conn.socket.write(encodeText(frame));
  }

  /** The newest open connection. */
  get last() {
    return [...this.conns].reverse().find((c) => c.open);
  }

  /** Delivers a chat message (code 1003) on the newest connection, at the next offset unless
   * `offset` is given. */
  deliver({ msgId, userId, roomId, content, senderName, offset }) {
    const data = JSON.stringify({ roomId, content, senderName });
    const at = offset ?? ++this.top;
    this.top = Math.max(this.top, at);
    this.send(this.last, 1003, { appId: 10001, userId, bizCode: 5555, msgId, roomId, data, epoch: this.epoch, offset: at });
  }

  /** Drops the newest connection without a close frame (like a network failure). */
  drop() {
    const c = this.last;
    if (c) {
      c.open = false;
      c.socket.destroy();
    }
  }

  /** What the gateway does when the same user logs in to the room elsewhere: logout, close. */
  replace() {
    const c = this.last;
    this.send(c, 1002, { appId: 10001, data: 'true' });
    setTimeout(() => {
      c.open = false;
      c.socket.end(Buffer.from([0x88, 2, 0x03, 0xf0])); // close 1008
    }, 5);
  }

  of(code) {
    return this.frames.filter((f) => f.code === code);
  }
}
