// Room (viewer) page: the video (mpegts.js, live, latency chasing), danmaku over it, the chat
// panel, the viewer count, and clear offline / ended states driven by polling anchorConfig.
import { api, typeLabel } from './api.js';
import { h, $, setChildren, renderTopbar, avatar, formatCount, formatDuration, every, copyButton } from './ui.js';
import { Danmaku } from './danmaku.js';
import { icon } from './icons.js';
import { createChat } from './chat.js';
import { canModerate } from './moderation.js';
import { LivePlayer, choosePlayer, playbackSupported } from './player.js';

const POLL_MS = 2000;
const roomId = Number(new URLSearchParams(location.search).get('id'));
const playerEl = $('#player');
const video = $('#video');
const overlay = $('#overlay');
const danmaku = new Danmaku($('#danmaku'));
let player = null;
let room = null;
let chat = null;
let ended = false;
let stopPolling = () => {};

function setOverlay(state, title, text, extra) {
  playerEl.dataset.state = state;
  if (!title) {
    overlay.hidden = true;
    return;
  }
  overlay.hidden = false;
  const name = { offline: 'offline', ended: 'flag', error: 'alert', missing: 'search' }[state];
  setChildren(overlay,
    name ? h('div', { className: 'ov-icon' }, icon(name, 44)) : h('div', { className: 'spinner', attrs: { 'aria-hidden': 'true' } }),
    h('h2', { text: title, dataset: { testid: 'overlay-title' } }),
    text ? h('p', { text }) : null,
    extra || null);
}

let infoSig = '';
function renderInfo(r) {
  const sig = JSON.stringify([r.roomName, r.anchorNickName, r.anchorAvatar, r.type, r.streaming, r.watchNum, r.startTime, ended]);
  if (sig === infoSig) return;
  infoSig = sig;
  const started = r.startTime ? Date.now() - r.startTime : 0;
  setChildren($('#room-info'),
    avatar(r.anchorNickName, r.anchorAvatar, 48),
    h('div', { className: 'room-info-text' },
      h('h1', { text: r.roomName, dataset: { testid: 'room-name' } }),
      h('div', {}, h('span', { className: 'anchor-name', text: r.anchorNickName, dataset: { testid: 'anchor-name' } })),
      h('div', { className: 'tags' },
        h('span', { className: Number(r.type) === 2 ? 'badge badge-pk' : 'badge badge-type', text: typeLabel(r.type) }),
        ended ? h('span', { className: 'badge badge-ended', text: 'Ended' })
          : r.streaming ? h('span', { className: 'badge badge-live', text: 'Live' }) : h('span', { className: 'badge badge-wait', text: 'Offline' }))),
    h('div', { className: 'room-stats' },
      h('span', { className: 'stat-viewers', title: 'Viewers', dataset: { testid: 'viewer-count' }, text: `${formatCount(r.watchNum)} watching` }),
      !ended && r.streaming && r.startTime ? h('span', { title: 'Live for', id: 'uptime', text: formatDuration(started) }) : null,
      copyButton(() => location.href, 'Share')));
}

function endRoom() {
  if (ended) return;
  ended = true;
  if (player) player.stop();
  player = null;
  video.removeAttribute('src');
  danmaku.clear();
  stopPolling();
  setOverlay('ended', 'This stream has ended', 'Thanks for watching! The streamer closed the room.',
    h('a', { className: 'btn btn-primary', href: '/', text: 'Find another live room', dataset: { testid: 'back-home' } }));
  if (room) renderInfo(room);
  if (chat) {
    chat.setDisabled('The stream has ended');
    chat.addSystem('The stream has ended.');
    chat.stop();
  }
  document.title = 'Stream ended — livehouse';
}

const playerLog = (window.__playerLog = []); // state changes, for tests and bug reports
function onPlayerState(s, detail) {
  playerLog.push({ at: Math.round(performance.now()), state: s, detail: detail ? String(detail) : undefined });
  if (playerLog.length > 100) playerLog.shift();
  if (ended) return;
  if (s === 'playing') {
    setOverlay('playing');
    playerEl.classList.add('show-controls');
    setTimeout(() => playerEl.classList.remove('show-controls'), 2500);
    if (video.muted) $('#unmute').hidden = false;
  } else if (s === 'loading') {
    setOverlay('loading', 'Connecting to the stream…');
  } else if (s === 'stalled') {
    setOverlay('loading', 'Reconnecting to the stream…', 'The video was interrupted; picking it up again.');
  } else if (s === 'error') {
    setOverlay('error', 'The video cannot play here', 'This browser cannot play the stream.');
  }
}

async function poll() {
  let r;
  try {
    r = await api.anchorConfig(roomId);
  } catch (e) {
    if (!room) setOverlay('error', 'Cannot load this room', e.message);
    return;
  }
  if (Number(r.roomId) === -1) {
    if (!room) {
      setOverlay('ended', 'This room is not live', 'The stream may have ended. Find another room on the home page.',
        h('a', { className: 'btn btn-primary', href: '/', text: 'Browse live rooms', dataset: { testid: 'back-home' } }));
      ended = true;
      stopPolling();
      setChildren($('#room-info'));
      setupChat(null);
      document.title = 'Room not live — livehouse';
      return;
    }
    endRoom();
    return;
  }
  const first = !room;
  room = r;
  if (first) {
    document.title = `${r.roomName} — ${r.anchorNickName} — livehouse`;
    setupChat(r);
  }
  renderInfo(r);
  if (r.streaming) {
    if (!playbackSupported(video)) {
      setOverlay('error', 'The video cannot play in this browser', 'It needs Media Source Extensions or HLS with H.264 (any current desktop or phone browser).');
      return;
    }
    if (!player) {
      const q = new URLSearchParams(location.search);
      player = new LivePlayer(video, { flv: r.flvUrl || `/live/${roomId}.flv`, hls: r.hlsUrl || `/live/${roomId}.m3u8` }, {
        engine: choosePlayer(video),
        lowLatency: q.get('ll') !== '0',
        onState: onPlayerState,
        canRetry: async () => {
          const x = await api.anchorConfig(roomId);
          return Number(x.roomId) > 0 && Boolean(x.streaming);
        },
      });
      player.start();
      playerEl.dataset.engine = player.engine;
      window.__player = player;
    }
  } else {
    if (player) {
      player.stop();
      player = null;
    }
    setOverlay('offline', `${r.anchorNickName} is offline`, 'The room is open but no video is arriving yet. It starts playing by itself when the streamer goes live.');
  }
}

function setupChat(r) {
  renderTopbar().then(async (me) => {
    if (!r) {
      // Not live: no chat connection, just the panel saying so.
      setChildren($('#chat'), h('div', { className: 'chat-head' }, h('h2', { text: 'Stream chat' })),
        h('div', { className: 'chat-list' }, h('div', { className: 'chat-line system', text: 'This room is not live, so its chat is closed.' })));
      return;
    }
    // Room admins (and operators) get the moderation menu on each message.
    const moderation = me.loginStatus ? await canModerate(roomId) : false;
    chat = createChat($('#chat'), { roomId, me, anchorId: r.anchorId, danmaku, moderation });
    if (ended) {
      chat.setDisabled('The stream has ended');
      chat.stop();
    }
  });
}

// ---- controls ----
function syncMute() {
  setChildren($('#btn-mute'), icon(video.muted ? 'volumeOff' : 'volumeOn'));
  $('#btn-mute').title = video.muted ? 'Unmute' : 'Mute';
  if (!video.muted) $('#unmute').hidden = true;
}
video.addEventListener('volumechange', syncMute);
$('#btn-mute').addEventListener('click', () => {
  video.muted = !video.muted;
});
$('#unmute').addEventListener('click', () => {
  video.muted = false;
  video.play().catch(() => {});
});
$('#btn-danmaku').addEventListener('click', (e) => {
  const on = !danmaku.enabled;
  danmaku.setEnabled(on);
  e.currentTarget.classList.toggle('off', !on);
  e.currentTarget.setAttribute('aria-pressed', String(on));
  e.currentTarget.title = on ? 'Hide danmaku' : 'Show danmaku';
});
$('#btn-fs').addEventListener('click', () => {
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  else playerEl.requestFullscreen?.().catch(() => {});
});
playerEl.addEventListener('click', (e) => {
  if (e.target === video) playerEl.classList.toggle('show-controls');
});
setChildren($('#btn-danmaku'), icon('danmaku'));
setChildren($('#btn-fs'), icon('fullscreen'));
setChildren($('#unmute'), icon('volumeOff', 18), 'Tap to unmute');
setInterval(() => {
  const lat = player ? player.latency() : null;
  $('#latency').textContent = lat == null || ended ? '' : `${lat.toFixed(1)} s delay`;
  const up = document.getElementById('uptime');
  if (up && room && room.startTime) up.textContent = formatDuration(Date.now() - room.startTime);
}, 1000);
syncMute();

if (!Number.isFinite(roomId) || roomId <= 0) {
  setOverlay('missing', 'No such room', 'The link is missing a room number.',
    h('a', { className: 'btn btn-primary', href: '/', text: 'Browse live rooms' }));
  renderTopbar();
} else {
  stopPolling = every(POLL_MS, poll);
}
