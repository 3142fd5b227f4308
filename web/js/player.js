// Live HTTP-FLV playback with mpegts.js (vendored at /vendor/mpegts.js, loaded as a classic
// script that defines window.mpegts). Low delay: no stash buffer, mpegts.js latency chasing
// (seeks back near the live edge when the buffer runs ahead of playback by more than
// `maxLatency`), plus a watchdog here that jumps to the edge when latency grows past
// `hardLatency` (e.g. after the tab was in the background) and restarts a stalled player.
//
// States (onState): loading | playing | stalled | error. The page decides offline / ended from
// /living/anchorConfig; `start()` / `stop()` follow that.

const CFG = {
  enableWorker: false,
  enableStashBuffer: false,
  stashInitialSize: 128 * 1024,
  isLive: true,
  lazyLoad: false,
  liveBufferLatencyChasing: true,
  liveBufferLatencyChasingOnPaused: false,
  liveBufferLatencyMaxLatency: 1.5,
  liveBufferLatencyMinRemain: 0.5,
  autoCleanupSourceBuffer: true,
  autoCleanupMaxBackwardDuration: 20,
  autoCleanupMinBackwardDuration: 10,
  fixAudioTimestampGap: false,
};

let loggingSet = false;
function quietLogs(mpegts) {
  if (loggingSet) return;
  loggingSet = true;
  // mpegts.js logs network failures (a stream that ends, a reconnect) with console.error; they
  // are expected for live streams and surface through the ERROR event, handled below.
  mpegts.LoggingControl.enableVerbose = false;
  mpegts.LoggingControl.enableDebug = false;
  mpegts.LoggingControl.enableInfo = false;
  mpegts.LoggingControl.enableWarn = false;
  mpegts.LoggingControl.enableError = false;
}

export function playbackSupported() {
  const m = window.mpegts;
  if (!m) return false;
  const f = m.getFeatureList();
  return Boolean(f.mseLiveFlvPlayback || f.mseLivePlayback);
}

export class LivePlayer {
  constructor(video, url, { onState, hardLatency = 2.5, canRetry } = {}) {
    // Asked before reopening after a failure, so a stream that ended is not requested again.
    this.canRetry = canRetry || (async () => true);
    this.video = video;
    this.url = new URL(url, location.href).href;
    this.onState = onState || (() => {});
    this.hardLatency = hardLatency;
    this.player = null;
    this.state = 'idle';
    this.retry = 0;
    this.timers = {};
    this.lastTime = -1;
    this.lastAdvance = 0;
    this.stopped = true;
  }

  setState(s, detail) {
    if (this.state === s) return;
    this.state = s;
    this.onState(s, detail);
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.open();
    this.timers.watch = setInterval(() => this.watch(), 500);
  }

  stop() {
    this.stopped = true;
    clearInterval(this.timers.watch);
    clearTimeout(this.timers.retry);
    this.timers = {};
    this.close();
    this.setState('idle');
  }

  /** Seconds between the newest buffered frame and the playhead. */
  latency() {
    const v = this.video;
    const b = v.buffered;
    if (!b || !b.length) return null;
    return Math.max(0, b.end(b.length - 1) - v.currentTime);
  }

  open() {
    const mpegts = window.mpegts;
    if (!mpegts) {
      this.setState('error', 'the player library did not load');
      return;
    }
    quietLogs(mpegts);
    this.close();
    this.setState('loading');
    const p = mpegts.createPlayer({ type: 'flv', isLive: true, url: this.url, hasAudio: undefined, hasVideo: true }, CFG);
    this.player = p;
    p.on(mpegts.Events.ERROR, (type, detail, info) => {
      if (this.player !== p) return;
      console.warn('player:', type, detail, info && info.msg ? info.msg : '');
      this.scheduleRetry(`${type}: ${detail}`);
    });
    p.on(mpegts.Events.LOADING_COMPLETE, () => {
      // The server ended the FLV response: the stream stopped; try again shortly.
      if (this.player === p) this.scheduleRetry('the stream ended');
    });
    p.attachMediaElement(this.video);
    p.load();
    this.lastAdvance = performance.now();
    this.lastTime = -1;
    const play = p.play();
    if (play && play.catch) {
      play.catch((e) => {
        // Autoplay with sound refused: retry muted (the page offers "unmute").
        if (this.player !== p) return;
        if (e && e.name === 'NotAllowedError' && !this.video.muted) {
          this.video.muted = true;
          this.video.dispatchEvent(new Event('volumechange'));
          p.play().catch(() => {});
        }
      });
    }
  }

  close() {
    const p = this.player;
    this.player = null;
    if (!p) return;
    try {
      p.pause();
      p.unload();
      p.detachMediaElement();
      p.destroy();
    } catch (e) {
      console.warn('player: destroy failed', e);
    }
  }

  scheduleRetry(why) {
    if (this.stopped) return;
    this.close();
    clearTimeout(this.timers.retry);
    const delay = Math.min(5000, 500 * 2 ** this.retry);
    this.retry++;
    this.setState('stalled', why);
    const attempt = async () => {
      if (this.stopped) return;
      let ok = false;
      try {
        ok = await this.canRetry();
      } catch {
        ok = false;
      }
      if (this.stopped) return;
      if (ok) this.open();
      else this.timers.retry = setTimeout(attempt, 1000);
    };
    this.timers.retry = setTimeout(attempt, delay);
  }

  watch() {
    if (this.stopped || !this.player) return;
    const v = this.video;
    const now = performance.now();
    if (v.currentTime !== this.lastTime) {
      if (this.lastTime >= 0 && v.currentTime > this.lastTime && v.videoWidth > 0) {
        this.retry = 0;
        this.setState('playing');
      }
      this.lastTime = v.currentTime;
      this.lastAdvance = now;
    } else if (now - this.lastAdvance > 6000 && !v.paused) {
      // No progress for 6 s while meant to play: reopen the stream.
      this.scheduleRetry('no progress for 6 s');
      return;
    }
    const lat = this.latency();
    if (lat != null && lat > this.hardLatency && v.buffered.length) {
      const end = v.buffered.end(v.buffered.length - 1);
      v.currentTime = Math.max(v.currentTime, end - 0.5);
    }
    if (v.paused && !v.ended && this.state === 'playing' && !this.userPaused) {
      v.play().catch(() => {});
    }
  }
}
