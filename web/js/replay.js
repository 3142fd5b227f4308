// Replay page (replay.html?id=N): the recording of a closed room, /records/{id}.flv, played with
// mpegts.js as a file (not live). The record carries a keyframe index in its onMetaData, so a
// seek (the seek bar or the video's own controls) asks for a byte range from that keyframe on.
import { $, renderTopbar, formatDuration } from './ui.js';

const id = Number(new URLSearchParams(location.search).get('id'));
const video = $('#video');
const seek = $('#seek');
const status = $('#replay-status');
let dragging = false;

renderTopbar();

function fmt(s) {
  return formatDuration((Number.isFinite(s) ? s : 0) * 1000);
}

function sync() {
  const d = Number.isFinite(video.duration) ? video.duration : 0;
  seek.max = String(d);
  if (!dragging) seek.value = String(video.currentTime);
  $('#pos').textContent = fmt(video.currentTime);
  $('#dur').textContent = fmt(d);
}

async function start() {
  if (!Number.isFinite(id) || id <= 0) {
    status.textContent = 'The link is missing a record number.';
    return;
  }
  document.title = `Replay of room ${id} — livehouse`;
  $('#replay-title').textContent = `Replay of room ${id}`;
  const url = `/records/${id}.flv`;
  const head = await fetch(url, { method: 'HEAD' }).catch(() => null);
  if (!head || !head.ok) {
    status.textContent = 'This replay is not available (yet): recordings are ready a moment after the stream ends.';
    video.closest('main').dataset.state = 'missing';
    return;
  }
  const mpegts = window.mpegts;
  if (!mpegts || !mpegts.getFeatureList().msePlayback) {
    status.textContent = 'This browser cannot play the replay (it needs Media Source Extensions).';
    return;
  }
  mpegts.LoggingControl.enableAll = false;
  // Load a few seconds ahead only (a record may be hours long): a seek past them asks for the
  // byte range of the nearest keyframe (mpegts.js reads the index from onMetaData).
  const player = mpegts.createPlayer({ type: 'flv', url, isLive: false },
    { seekType: 'range', enableWorker: false, lazyLoad: true, lazyLoadMaxDuration: 4, lazyLoadRecoverDuration: 2 });
  player.on(mpegts.Events.ERROR, (type, detail) => {
    status.textContent = `The replay stopped: ${type} ${detail}`;
  });
  player.attachMediaElement(video);
  player.load();
  window.__replay = player;
  video.closest('main').dataset.state = 'ready';
}

video.addEventListener('timeupdate', sync);
video.addEventListener('durationchange', sync);
seek.addEventListener('input', () => {
  dragging = true;
  $('#pos').textContent = fmt(Number(seek.value));
});
seek.addEventListener('change', () => {
  dragging = false;
  video.currentTime = Number(seek.value);
});
start();
