// Creator studio: start a room (name, type, cover), then the streamer's console — push URL and
// stream key (hidden until revealed, copy buttons), ready-to-paste ffmpeg commands, OBS
// settings, a live status that turns on when video arrives (polled from anchorConfig), a muted
// preview, the room's chat, the viewer count, and "End stream".
import { api, ApiError, ROOM_TYPES } from './api.js';
import { h, $, setChildren, renderTopbar, authDialog, session, cover, avatar, formatCount, formatDuration, every, toast, copyButton, confirmDialog } from './ui.js';
import { createChat } from './chat.js';
import { moderationPanel } from './moderation.js';
import { Danmaku } from './danmaku.js';
import { icon } from './icons.js';
import { LivePlayer, playbackSupported } from './player.js';

const POLL_MS = 2000;
const PRESETS = ['neon', 'ocean', 'sunset', 'forest', 'night', 'arena'].map((n) => `/img/covers/${n}.svg`);
const main = $('#studio');
let me = null;

function setQuery(id) {
  history.replaceState(null, '', id ? `/studio.html?id=${id}` : '/studio.html');
}

/** The signed-in anchor's live room id, if any: `/home/initPage` names it (`livingRoomId`); the
 * remembered id and the room lists are the fallback for an older server. */
async function findMyRoom() {
  const fresh = await api.initPage().catch(() => null);
  if (fresh && 'livingRoomId' in fresh) return Number(fresh.livingRoomId) > 0 ? Number(fresh.livingRoomId) : null;
  const remembered = Number(sessionStorage.getItem('livehouse.myRoom'));
  if (remembered > 0) {
    try {
      const r = await api.anchorConfig(remembered);
      if (Number(r.roomId) > 0 && r.isAnchor) return remembered;
    } catch {
      /* fall through to the lists */
    }
    sessionStorage.removeItem('livehouse.myRoom');
  }
  for (const t of ROOM_TYPES) {
    for (let page = 1; page <= 20; page++) {
      const d = await api.list(t.type, page, 100);
      const mine = (d.list || []).find((r) => Number(r.anchorId) === Number(me.userId));
      if (mine) return Number(mine.id);
      if (!d.hasNext) break;
    }
  }
  return null;
}

// ---- start form ---------------------------------------------------------------------------

function startForm() {
  setQuery(null);
  document.title = 'Go live — livehouse';
  const name = h('input', { type: 'text', name: 'roomName', required: true, maxLength: 64, placeholder: 'What are you streaming today?', dataset: { testid: 'room-name' } });
  name.value = `${me.nickName || 'My'}'s stream`;
  const types = h('div', { className: 'type-choices', attrs: { role: 'radiogroup', 'aria-label': 'Room type' } },
    ROOM_TYPES.map((t, i) => h('label', { className: 'choice' },
      h('input', { type: 'radio', name: 'type', value: String(t.type), checked: i === 0, dataset: { testid: `type-${t.type}` } }),
      h('strong', { text: t.label }), h('span', { text: t.hint }))));
  let coverUrl = PRESETS[0];
  const custom = h('input', { type: 'url', name: 'covertImg', maxLength: 512, placeholder: 'https://… (or pick one above)', dataset: { testid: 'cover-url' } });
  const presetBtns = PRESETS.map((u) => {
    const b = h('button', { type: 'button', className: 'cover-preset', attrs: { 'aria-label': `Cover ${u.split('/').pop().replace('.svg', '')}` } }, h('img', { src: u, alt: '' }));
    b.addEventListener('click', () => {
      coverUrl = u;
      custom.value = '';
      sync();
    });
    return b;
  });
  const err = h('p', { className: 'form-error', attrs: { role: 'alert' } });
  const record = h('input', { type: 'checkbox', name: 'record', dataset: { testid: 'record' } });
  const submit = h('button', { type: 'submit', className: 'btn btn-primary', text: 'Start streaming', dataset: { testid: 'go-live' } });
  const previewBox = h('div');
  const currentType = () => Number(types.querySelector('input:checked').value);
  const sync = () => {
    const url = custom.value.trim() || coverUrl;
    presetBtns.forEach((b, i) => b.classList.toggle('selected', !custom.value.trim() && PRESETS[i] === coverUrl));
    setChildren(previewBox, h('div', { className: 'room-card' },
      h('div', { className: 'thumb' }, cover(url, name.value, name.value), h('span', { className: 'badge badge-live', text: 'Live' }),
        currentType() === 2 ? h('span', { className: 'badge badge-pk', text: 'PK' }) : null,
        h('span', { className: 'viewers-pill', text: '0 viewers' })),
      h('div', { className: 'room-meta' }, avatar(me.nickName, me.avatar, 36),
        h('div', { className: 'room-meta-text' }, h('span', { className: 'room-title', text: name.value || 'Untitled stream' }), h('span', { className: 'room-anchor', text: me.nickName })))));
  };
  name.addEventListener('input', sync);
  custom.addEventListener('input', sync);
  types.addEventListener('change', sync);
  const form = h('form', { className: 'card start-form' },
    h('div', {}, h('h1', { text: 'Go live' }), h('p', { className: 'muted', text: 'Name your room, pick its type and cover. You get a push URL for ffmpeg or OBS next.' })),
    h('label', { className: 'field' }, h('span', { className: 'field-label', text: 'Room name' }), name, h('span', { className: 'field-hint', text: 'Up to 64 characters; shown in the live list.' })),
    h('div', { className: 'field' }, h('span', { className: 'field-label', text: 'Type' }), types),
    h('div', { className: 'field' }, h('span', { className: 'field-label', text: 'Cover' }), h('div', { className: 'cover-presets' }, presetBtns), custom,
      h('span', { className: 'field-hint', text: 'Pick a cover or paste the address of a picture (http or https).' })),
    h('label', { className: 'field check' }, record, h('span', { className: 'field-label', text: 'Record this stream' }),
      h('span', { className: 'field-hint', text: 'Viewers can watch the replay, with a seek bar, after the stream ends.' })),
    err,
    h('div', {}, submit));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    const roomName = name.value.trim();
    if (!roomName) {
      err.textContent = 'Give your room a name.';
      name.focus();
      return;
    }
    submit.disabled = true;
    try {
      const { roomId } = await api.startLiving(currentType(), roomName, custom.value.trim() || coverUrl, record.checked);
      sessionStorage.setItem('livehouse.myRoom', String(roomId));
      await consoleView(roomId);
    } catch (ex) {
      if (ex instanceof ApiError && ex.code === 409) {
        err.textContent = 'You already have a live room. Opening its console…';
        // The live list is rebuilt every second: a room started moments ago may not be in it yet.
        let id = null;
        for (let i = 0; i < 4 && !id; i++) {
          if (i) await new Promise((r) => setTimeout(r, 800));
          id = await findMyRoom().catch(() => null);
        }
        if (id) await consoleView(id);
        else err.textContent = `${ex.message} Open it from the home page, or end it first.`;
      } else {
        err.textContent = ex.message;
      }
    } finally {
      submit.disabled = false;
    }
  });
  sync();
  setChildren(main, h('div', { className: 'start-grid' }, form,
    h('aside', { className: 'card preview-card' }, h('h3', { text: 'Preview in the live list', style: 'margin-bottom:12px' }), previewBox)));
  name.focus();
  name.select();
}

// ---- console -------------------------------------------------------------------------------

function shellQuote(s) {
  return `'${String(s).replace(/'/g, `'\\''`)}'`;
}

function ffmpegCommands(pushUrl) {
  const q = shellQuote(pushUrl);
  return {
    test: `ffmpeg -re -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440 \\\n  -c:v libx264 -preset veryfast -tune zerolatency -g 60 -pix_fmt yuv420p -b:v 2500k \\\n  -c:a aac -b:a 128k -ar 44100 -f flv ${q}`,
    file: `ffmpeg -re -stream_loop -1 -i input.mp4 \\\n  -c:v libx264 -preset veryfast -tune zerolatency -g 60 -pix_fmt yuv420p -b:v 2500k \\\n  -c:a aac -b:a 128k -ar 44100 -f flv ${q}`,
  };
}

function mask(s) {
  return '•'.repeat(Math.min(24, Math.max(8, String(s).length)));
}

async function consoleView(roomId) {
  let r;
  try {
    r = await api.anchorConfig(roomId);
  } catch (e) {
    setChildren(main, h('div', { className: 'empty' }, h('h2', { text: 'Cannot load this room' }), h('p', { text: e.message })));
    return;
  }
  if (Number(r.roomId) === -1) {
    sessionStorage.removeItem('livehouse.myRoom');
    endedView(null);
    return;
  }
  if (!r.isAnchor) {
    setChildren(main, h('div', { className: 'empty' }, h('h2', { text: 'This is not your room' }),
      h('p', { text: 'Only its streamer can open the console.' }), h('a', { className: 'btn btn-primary', href: `/room.html?id=${roomId}`, text: 'Watch it instead' })));
    return;
  }
  setQuery(roomId);
  document.title = `Console — ${r.roomName} — livehouse`;
  const peak = { viewers: Number(r.watchNum) || 0 };

  // Head
  const chip = h('span', { className: 'status-chip', dataset: { testid: 'live-status', state: 'waiting' }, text: 'Waiting for video' });
  const endBtn = h('button', { type: 'button', className: 'btn btn-danger', text: 'End stream', dataset: { testid: 'end-stream' } });
  const head = h('div', { className: 'console-head' },
    h('div', {}, h('h1', { text: r.roomName, dataset: { testid: 'console-room-name' } }), h('p', { className: 'muted', text: `Room ${r.roomId} · ${Number(r.type) === 2 ? 'PK' : 'Normal'}` })),
    chip,
    h('div', { className: 'actions' }, h('a', { className: 'btn', href: `/room.html?id=${r.roomId}`, target: '_blank', rel: 'noopener', text: 'Open viewer page', dataset: { testid: 'open-room' } }), endBtn));

  // Preview + stats
  const video = h('video', { muted: true, playsInline: true, autoplay: true, dataset: { testid: 'preview-video' } });
  video.muted = true;
  const dmLayer = h('div', { className: 'danmaku-layer', attrs: { 'aria-hidden': 'true' } });
  const overlay = h('div', { className: 'player-overlay' });
  const playerBox = h('div', { className: 'player', dataset: { testid: 'preview' } }, video, dmLayer, overlay);
  const vViewers = h('div', { className: 'v', dataset: { testid: 'viewer-count' }, text: formatCount(r.watchNum) });
  const vUptime = h('div', { className: 'v', text: '—' });
  const vState = h('div', { className: 'v', text: 'Offline' });
  const statsRow = h('div', { className: 'stats-row' },
    h('div', { className: 'stat' }, vState, h('div', { className: 'k', text: 'Stream' })),
    h('div', { className: 'stat' }, vViewers, h('div', { className: 'k', text: 'Viewers' })),
    h('div', { className: 'stat' }, vUptime, h('div', { className: 'k', text: 'Live for' })));

  // Stream setup
  let revealed = false;
  const keyEl = h('code', { className: 'secret masked', dataset: { testid: 'stream-key' } });
  const urlEl = h('code', { className: 'secret masked', dataset: { testid: 'push-url' } });
  const serverEl = h('code', { className: 'secret', dataset: { testid: 'push-server' }, text: r.pushServer || '' });
  const revealBtn = h('button', { type: 'button', className: 'btn btn-small', dataset: { testid: 'reveal-key' } });
  const cmds = ffmpegCommands(r.pushUrl);
  const cmdTest = h('pre', { className: 'code code-block', dataset: { testid: 'ffmpeg-cmd' } });
  const cmdFile = h('pre', { className: 'code code-block' });
  const renderSecrets = () => {
    keyEl.textContent = revealed ? r.streamKey : mask(r.streamKey);
    urlEl.textContent = revealed ? r.pushUrl : `${r.pushServer}/${mask(r.streamKey)}`;
    keyEl.classList.toggle('masked', !revealed);
    urlEl.classList.toggle('masked', false);
    cmdTest.textContent = revealed ? cmds.test : cmds.test.replace(r.pushUrl, `${r.pushServer}/${mask(r.streamKey)}`);
    cmdFile.textContent = revealed ? cmds.file : cmds.file.replace(r.pushUrl, `${r.pushServer}/${mask(r.streamKey)}`);
    revealBtn.textContent = revealed ? 'Hide' : 'Reveal';
    revealBtn.setAttribute('aria-pressed', String(revealed));
  };
  revealBtn.addEventListener('click', () => {
    revealed = !revealed;
    renderSecrets();
  });
  renderSecrets();
  const setup = h('section', { className: 'card' },
    h('div', { className: 'card-head' }, h('h2', { text: 'Stream setup' }), h('span', { className: 'muted', text: 'Keep your stream key secret: anyone with it can stream to your room.' })),
    h('div', { className: 'kv' },
      h('span', { className: 'k', text: 'Server' }), serverEl, h('div', { className: 'btn-row' }, copyButton(() => r.pushServer, 'Copy', 'copy-server')),
      h('span', { className: 'k', text: 'Stream key' }), keyEl, h('div', { className: 'btn-row' }, revealBtn, copyButton(() => r.streamKey, 'Copy', 'copy-key')),
      h('span', { className: 'k', text: 'Push URL' }), urlEl, h('div', { className: 'btn-row' }, copyButton(() => r.pushUrl, 'Copy', 'copy-url'))));
  const ff = h('section', { className: 'card' },
    h('div', { className: 'card-head' }, h('h2', { text: 'ffmpeg' }), copyButton(() => cmds.test, 'Copy command', 'copy-ffmpeg')),
    h('p', { className: 'muted', style: 'margin-bottom:8px', text: 'A test pattern with a tone, ready to paste:' }), cmdTest,
    h('div', { className: 'card-head', style: 'margin:16px 0 8px' }, h('span', { className: 'muted', text: 'Or loop a video file:' }), copyButton(() => cmds.file, 'Copy command')), cmdFile);
  const obsRows = [
    ['Settings → Stream → Service', 'Custom…'],
    ['Server', r.pushServer],
    ['Stream Key', 'your stream key (above)'],
    ['Output → Encoder', 'x264 (or hardware H.264)'],
    ['Rate control / Bitrate', 'CBR, 2500–6000 Kbps'],
    ['Keyframe interval', '2 s'],
    ['CPU preset / Tune', 'veryfast / zerolatency'],
    ['Profile', 'main (or high)'],
    ['Audio', 'AAC, 128 Kbps, 44.1 or 48 kHz'],
    ['Video → Output resolution / FPS', '1280×720 or 1920×1080, 30 or 60'],
  ];
  const obs = h('details', { className: 'card' }, h('summary', { text: 'OBS Studio settings' }),
    h('table', { className: 'obs-table' }, h('tbody', {}, obsRows.map(([k, v]) => h('tr', {}, h('td', { text: k }), h('td', { text: v }))))));

  const health = healthPanel(r);
  const chatBox = h('aside', { className: 'chat' });
  const modBox = h('div');
  setChildren(main, h('div', { className: 'console-grid' },
    h('div', { className: 'console-main' }, head, h('section', { className: 'card' }, playerBox, statsRow), health.el, modBox, setup, ff, obs),
    h('div', { className: 'console-side' }, chatBox)));
  main.classList.remove('page-narrow');

  const danmaku = new Danmaku(dmLayer, { maxConcurrent: 30 });
  const chat = createChat(chatBox, { roomId: r.roomId, me, anchorId: r.anchorId, danmaku, title: 'Your chat', moderation: true });
  const modPanel = moderationPanel(modBox, r.roomId);
  let player = null;
  let stop = () => {};
  let ended = false;

  const setOverlay = (title, text) => {
    overlay.hidden = !title;
    if (title) setChildren(overlay, h('div', { className: 'ov-icon' }, icon('broadcast', 44)), h('h2', { text: title }), text ? h('p', { text }) : null);
  };
  const apply = (x) => {
    const live = Boolean(x.streaming);
    chip.dataset.state = live ? 'live' : 'waiting';
    chip.textContent = live ? 'LIVE' : 'Waiting for video';
    vState.textContent = live ? 'Live' : 'Offline';
    vState.style.color = live ? '#ff6b6b' : '';
    vViewers.textContent = formatCount(x.watchNum);
    peak.viewers = Math.max(peak.viewers, Number(x.watchNum) || 0);
    if (live) {
      overlay.hidden = true;
      if (!player && playbackSupported()) {
        player = new LivePlayer(video, { flv: x.flvUrl || `/live/${x.roomId}.flv`, hls: x.hlsUrl || `/live/${x.roomId}.m3u8` }, {
          canRetry: async () => {
            const y = await api.anchorConfig(x.roomId);
            return Number(y.roomId) > 0 && Boolean(y.streaming);
          },
          onState: (s) => {
            if (s === 'stalled' || s === 'loading') setOverlay(null);
          },
        });
        player.start();
      }
    } else {
      if (player) {
        player.stop();
        player = null;
      }
      setOverlay('Waiting for your video', 'Start ffmpeg or OBS with the push URL below; this turns live as soon as video arrives.');
    }
  };
  apply(r);
  const tick = setInterval(() => {
    vUptime.textContent = r.startTime ? formatDuration(Date.now() - r.startTime) : '—';
  }, 1000);
  const finish = (byMe) => {
    if (ended) return;
    ended = true;
    stop();
    health.stop();
    clearInterval(tick);
    if (player) player.stop();
    chat.stop();
    modPanel.stop();
    sessionStorage.removeItem('livehouse.myRoom');
    endedView({ room: r, peak: peak.viewers, byMe });
  };
  stop = every(POLL_MS, async () => {
    const x = await api.anchorConfig(r.roomId);
    if (ended) return;
    if (Number(x.roomId) === -1) {
      finish(false);
      return;
    }
    Object.assign(r, { watchNum: x.watchNum, streaming: x.streaming, startTime: x.startTime });
    apply(x);
    health.refresh(Boolean(x.streaming));
  });
  health.refresh(Boolean(r.streaming));
  endBtn.addEventListener('click', async () => {
    if (!(await confirmDialog('End your stream?', 'Viewers will see that the stream has ended, and the room leaves the live list.', 'End stream', true))) return;
    endBtn.disabled = true;
    try {
      await api.closeLiving(r.roomId);
      finish(true);
    } catch (e) {
      toast(e.message, 'error');
      endBtn.disabled = false;
    }
  });
}

// ---- stream health ---------------------------------------------------------------------------

const fmtKbps = (k) => (k >= 1000 ? `${(k / 1000).toFixed(1)} Mbit/s` : `${k} kbit/s`);

/** An SVG line chart of the last 5 minutes: bitrate (solid) and fps (dashed), each scaled. */
function chart(points) {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('class', 'health-chart');
  svg.setAttribute('viewBox', '0 0 300 100');
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.dataset.testid = 'health-chart';
  const maxK = Math.max(1, ...points.map((p) => p.kbps));
  const maxF = Math.max(1, ...points.map((p) => p.fps));
  const t0 = points.length ? points[points.length - 1].t - 300 : 0;
  for (const [key, max] of [['kbps', maxK], ['fps', maxF]]) {
    const line = document.createElementNS(NS, 'polyline');
    line.setAttribute('class', key);
    line.setAttribute('points', points.map((p) => `${Math.max(0, p.t - t0).toFixed(1)},${(96 - (p[key] / max) * 90).toFixed(1)}`).join(' '));
    svg.append(line);
  }
  return svg;
}

function healthPanel(room) {
  const grid = h('div', { className: 'health-grid', dataset: { testid: 'health-stats' } });
  const warn = h('ul', { className: 'health-warnings', dataset: { testid: 'health-warnings' } });
  const chartBox = h('div');
  const rec = h('span', { className: 'muted', dataset: { testid: 'recording' } });
  const el = h('section', { className: 'card', dataset: { testid: 'health' } },
    h('div', { className: 'card-head' }, h('h2', { text: 'Stream health' }), rec),
    grid, chartBox,
    h('div', { className: 'chart-legend' }, h('span', { className: 'kbps', text: 'Bitrate' }), h('span', { className: 'fps', text: 'Frame rate' }), h('span', { text: 'last 5 minutes' })),
    warn);
  let busy = false;
  let stopped = false;
  const stat = (k, v, id) => h('div', { className: 'stat' }, h('div', { className: 'v', text: v, dataset: id ? { testid: id } : undefined }), h('div', { className: 'k', text: k }));
  const render = (d) => {
    rec.textContent = d.recording ? '● Recording' : 'Not recording';
    const x = d.health;
    if (!x) {
      setChildren(grid, stat('Stream', 'No video arriving'));
      setChildren(warn);
      setChildren(chartBox);
      return;
    }
    const v = x.video || {};
    const a = x.audio;
    setChildren(grid,
      stat('Bitrate (1 s)', fmtKbps(x.bitrateKbps1s), 'health-bitrate'),
      stat('Bitrate (10 s)', fmtKbps(x.bitrateKbps10s)),
      stat('Frame rate', `${x.fps.toFixed(1)} fps`, 'health-fps'),
      stat('Keyframe interval', x.keyframeIntervalMs == null ? '—' : `${(x.keyframeIntervalMs / 1000).toFixed(1)} s`, 'health-keyframe'),
      stat('Resolution', v.width ? `${v.width}×${v.height}` : '—', 'health-resolution'),
      stat('Video', [v.codec, v.profile].filter(Boolean).join(' · ') || '—'),
      stat('Audio', a ? [a.codec, a.sampleRate ? `${a.sampleRate / 1000} kHz` : null, a.channels ? `${a.channels} ch` : null].filter(Boolean).join(' · ') : 'none'),
      stat('Uptime', formatDuration(x.uptimeMs)),
      stat('Reconnects', String(x.reconnects)),
      stat('Frames dropped for slow viewers', String(x.droppedFrames)),
      stat('Viewers FLV / HLS / RTMP', `${x.viewers.flv} / ${x.viewers.hls} / ${x.viewers.rtmp}`, 'health-viewers'));
    setChildren(chartBox, chart(x.chart || []));
    setChildren(warn, x.warnings.length
      ? x.warnings.map((w) => h('li', { text: w.message, dataset: { code: w.code } }))
      : h('li', { className: 'ok', text: 'Everything looks good.' }));
  };
  return {
    el,
    stop: () => {
      stopped = true;
    },
    async refresh(live) {
      if (busy || stopped) return;
      busy = true;
      try {
        if (live) render(await api.streamHealth(room.roomId));
        else render({ recording: room.record, health: null });
      } catch (e) {
        setChildren(warn, h('li', { text: `Stream health is unavailable: ${e.message}` }));
      } finally {
        busy = false;
      }
    },
  };
}

function endedView(info) {
  setQuery(null);
  document.title = 'Stream ended — livehouse';
  const again = h('button', { type: 'button', className: 'btn btn-primary', text: 'Start a new stream', dataset: { testid: 'start-again' } });
  again.addEventListener('click', startForm);
  const lines = [];
  if (info && info.room) {
    lines.push(h('p', { className: 'muted', text: `“${info.room.roomName}”` }));
    const dur = info.room.startTime ? formatDuration(Date.now() - info.room.startTime) : null;
    lines.push(h('div', { className: 'stats-row', style: 'max-width:520px;margin:18px auto 0' },
      h('div', { className: 'stat' }, h('div', { className: 'v', text: dur || '—' }), h('div', { className: 'k', text: 'Duration' })),
      h('div', { className: 'stat' }, h('div', { className: 'v', text: formatCount(info.peak) }), h('div', { className: 'k', text: 'Peak viewers' })),
      h('div', { className: 'stat' }, h('div', { className: 'v', text: 'Ended' }), h('div', { className: 'k', text: 'Status' }))));
    if (info.room.record) {
      lines.push(h('p', { style: 'margin-top:14px' }, h('a', { className: 'btn', href: `/replay.html?id=${info.room.roomId}`, text: 'Watch the replay', dataset: { testid: 'replay-link' } })));
    }
  }
  setChildren(main, h('section', { className: 'card ended-card', dataset: { testid: 'ended-card' } },
    h('span', { className: 'status-chip', dataset: { testid: 'live-status', state: 'ended' }, text: 'Ended' }),
    h('h1', { style: 'margin-top:14px', text: info && info.byMe === false ? 'This stream was ended' : 'Stream ended' }),
    lines,
    h('div', { className: 'actions' }, again, h('a', { className: 'btn', href: '/', text: 'Back to the live list' }))));
}

// ---- entry ---------------------------------------------------------------------------------

async function main_() {
  me = await renderTopbar();
  if (!me.loginStatus) {
    const up = h('button', { type: 'button', className: 'btn btn-primary', text: 'Sign up' });
    const inn = h('button', { type: 'button', className: 'btn', text: 'Sign in' });
    const go = async (mode) => {
      if (await authDialog(mode)) {
        await session(true);
        location.reload();
      }
    };
    up.addEventListener('click', () => go('signup'));
    inn.addEventListener('click', () => go('signin'));
    setChildren(main, h('div', { className: 'empty' }, h('h2', { text: 'Sign in to go live' }), h('p', { text: 'Streaming needs an account. It takes ten seconds.' }),
      h('div', { className: 'hero-actions', style: 'justify-content:center;margin-top:16px' }, up, inn)));
    return;
  }
  if (!me.showStartLivingBtn) {
    setChildren(main, h('div', { className: 'empty' }, h('h2', { text: 'This account cannot stream' }), h('p', { text: 'Streaming needs the anchor tag on your account. Ask an operator to grant it.' }),
      h('a', { className: 'btn', href: '/', text: 'Back to the live list' })));
    return;
  }
  const id = Number(new URLSearchParams(location.search).get('id'));
  if (id > 0) {
    await consoleView(id);
    return;
  }
  let mine = null;
  try {
    mine = await findMyRoom();
  } catch (e) {
    toast(`Cannot check your rooms: ${e.message}`, 'error');
  }
  if (mine) await consoleView(mine);
  else startForm();
}

main.classList.add('page-narrow');
main_();
