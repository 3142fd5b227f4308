// The HTTP API client: every call answers the envelope {code, msg, data}; code 200 is success,
// anything else becomes an ApiError carrying the server's human message. The session is the
// HttpOnly cookie `livehouse_token`, so every request sends same-origin credentials.

export class ApiError extends Error {
  constructor(code, msg) {
    super(msg || `request failed (${code})`);
    this.code = code;
  }
}

async function parse(res) {
  let body;
  try {
    body = await res.json();
  } catch {
    throw new ApiError(res.status, `the server answered ${res.status} without a message`);
  }
  if (!body || body.code !== 200) {
    throw new ApiError(body && body.code ? body.code : res.status, body && body.msg);
  }
  return body.data ?? {};
}

/** POST a JSON body; resolves to `data`, rejects with ApiError. */
export async function post(path, body = {}, { signal } = {}) {
  let res;
  try {
    res = await fetch(path, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body),
      signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network error: the server cannot be reached');
  }
  return parse(res);
}

/** GET with query parameters; resolves to `data`. */
export async function get(path, params = {}, { signal } = {}) {
  const q = new URLSearchParams(params).toString();
  let res;
  try {
    res = await fetch(q ? `${path}?${q}` : path, {
      credentials: 'same-origin',
      headers: { Accept: 'application/json' },
      signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network error: the server cannot be reached');
  }
  return parse(res);
}

export const api = {
  register: (username, password, nickname) => post('/user/register', { username, password, nickname }),
  login: (username, password) => post('/user/login', { username, password }),
  logout: () => post('/user/logout'),
  initPage: () => post('/home/initPage'),
  startLiving: (type, roomName, covertImg, record = false) => post('/living/startingLiving', { type, roomName, covertImg, record }),
  closeLiving: (roomId) => post('/living/closeLiving', { roomId }),
  anchorConfig: (roomId) => post('/living/anchorConfig', { roomId }),
  list: (type, page, pageSize) => get('/living/list', { type, page, pageSize }),
  // `avoid`: a gateway id this client could not reach (another one is chosen if any is live).
  imConfig: (avoid) => post('/im/getImConfig', avoid ? { avoid } : {}),
  streamHealth: (roomId) => get('/living/streamHealth', { roomId }),
};

export const ROOM_TYPES = [
  { type: 1, label: 'Normal', hint: 'One streamer, one room' },
  { type: 2, label: 'PK', hint: 'Head-to-head battle rooms' },
];

export function typeLabel(t) {
  return (ROOM_TYPES.find((x) => x.type === Number(t)) || { label: 'Live' }).label;
}
