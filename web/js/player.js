// Live playback, three engines behind one LivePlayer:
// - 'flv': HTTP-FLV with mpegts.js (vendored at /vendor/mpegts.js, loaded as a classic script
//   that defines window.mpegts), wherever Media Source Extensions (or Safari's
//   ManagedMediaSource) exist. Low delay: no stash buffer, mpegts.js latency chasing, plus a
//   watchdog here that jumps to the edge when latency grows past `hardLatency`.
// - 'hlsjs': LL-HLS with hls.js (vendored at /vendor/hls.min.js, loaded on first use), in its
//   low-latency mode; forced with `?player=hls` (tests, viewers behind caches).
// - 'native': the browser's own HLS (iOS Safari without MSE) playing the .m3u8 directly.
// `choosePlayer()` picks one. The watchdog restarts a stalled player with backoff.
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

function flvSupported() {
  const m = window.mpegts;
  if (!m) return false;
  const f = m.getFeatureList();
  return Boolean(f.mseLiveFlvPlayback || f.mseLivePlayback);
}

function mseExists() {
  return Boolean(window.MediaSource || window.ManagedMediaSource || window.WebKitMediaSource);
}

function nativeHls(video) {
  return Boolean(video && video.canPlayType && video.canPlayType('application/vnd.apple.mpegurl'));
}

/**
 * The engine for this browser: `?player=hls` forces hls.js (`?player=flv` mpegts.js); otherwise
 * mpegts.js where MSE or ManagedMediaSource exists, native HLS where the browser plays .m3u8
 * (iOS Safari), else null (cannot play here).
 */
export function choosePlayer(video, search = location.search) {
  const forced = new URLSearchParams(search).get('player');
  if (forced === 'hls') return 'hlsjs';
  if (forced === 'flv') return 'flv';
  if (forced === 'native') return 'native';
  if (mseExists() && flvSupported()) return 'flv';
  if (nativeHls(video)) return 'native';
  if (mseExists()) return 'hlsjs';
  return null;
}

/** Whether this browser can play the live stream with any engine. */
export function playbackSupported(video = document.createElement('video')) {
  return choosePlayer(video) !== null;
}

let hlsLoading = null;
/** Loads the vendored hls.js once (a classic script defining window.Hls). */
function loadHlsJs() {
  if (window.Hls) return Promise.resolve(window.Hls);
  if (!hlsLoading) {
    hlsLoading = new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = '/vendor/hls.min.js';
      s.onload = () => (window.Hls ? resolve(window.Hls) : reject(new Error('hls.js did not load')));
      s.onerror = () => {
        hlsLoading = null;
        reject(new Error('hls.js did not load'));
      };
      document.head.append(s);
    });
  }
  return hlsLoading;
}

export class LivePlayer {
  /**
   * `urls`: {flv, hls} (a string is an FLV URL). `engine`: 'flv' | 'hlsjs' | 'native'
   * (default: choosePlayer). `lowLatency` (hls.js): LL-HLS parts and blocking reloads (default
   * true; false plays whole segments, as a plain HLS client).
   */
  constructor(video, urls, { onState, hardLatency = 2.5, canRetry, engine, lowLatency = true } = {}) {
    // Asked before reopening after a failure, so a stream that ended is not requested again.
    this.canRetry = canRetry || (async () => true);
    this.video = video;
    if (typeof urls === 'string') urls = { flv: urls };
    this.urls = {
      flv: urls.flv ? new URL(urls.flv, location.href).href : null,
      hls: urls.hls ? new URL(urls.hls, location.href).href : null,
    };
    this.engine = engine || choosePlayer(video);
    this.lowLatency = lowLatency;
    this.url = this.engine === 'flv' ? this.urls.flv : this.urls.hls;
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

  /**
   * Seconds from the moment the server received the frame on screen to now: hls.js's
   * `playingDate` (EXT-X-PROGRAM-DATE-TIME) for HLS; null when unknown (FLV).
   */
  liveDelay() {
    const p = this.player;
    if (this.engine !== 'hlsjs' || !p || !p.playingDate) return null;
    return Math.max(0, (Date.now() - p.playingDate.getTime()) / 1000);
  }

  /** Seconds between the newest buffered frame and the playhead. */
  latency() {
    const v = this.video;
    const b = v.buffered;
    if (!b || !b.length) return null;
    return Math.max(0, b.end(b.length - 1) - v.currentTime);
  }

  open() {
    if (this.engine === 'hlsjs') return this.openHlsJs();
    if (this.engine === 'native') return this.openNative();
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

  /** Plays, retrying muted when autoplay with sound is refused (the page offers "unmute"). */
  playMuted(owner) {
    const play = this.video.play();
    if (play && play.catch) {
      play.catch((e) => {
        if (this.player !== owner) return;
        if (e && e.name === 'NotAllowedError' && !this.video.muted) {
          this.video.muted = true;
          this.video.dispatchEvent(new Event('volumechange'));
          this.video.play().catch(() => {});
        }
      });
    }
  }

  openHlsJs() {
    this.close();
    this.setState('loading');
    const owner = {};
    this.player = owner;
    loadHlsJs().then((Hls) => {
      if (this.player !== owner || this.stopped) return;
      if (!Hls.isSupported()) {
        this.setState('error', 'hls.js is not supported here');
        return;
      }
      const hls = new Hls({
        lowLatencyMode: this.lowLatency,
        enableWorker: true,
        backBufferLength: 30,
        maxLiveSyncPlaybackRate: 1.5,
        liveDurationInfinity: true,
      });
      this.player = hls;
      hls.on(Hls.Events.ERROR, (_event, data) => {
        if (this.player !== hls || !data.fatal) return;
        console.warn('player: hls.js', data.type, data.details);
        this.scheduleRetry(`${data.type}: ${data.details}`);
      });
      hls.loadSource(this.url);
      hls.attachMedia(this.video);
      this.lastAdvance = performance.now();
      this.lastTime = -1;
      this.playMuted(hls);
    }).catch((e) => {
      if (this.player === owner) this.setState('error', e.message);
    });
  }

  openNative() {
    this.close();
    this.setState('loading');
    const v = this.video;
    const owner = {
      destroy: () => {
        v.removeEventListener('error', onError);
        v.removeAttribute('src');
        v.load();
      },
    };
    const onError = () => {
      if (this.player === owner) this.scheduleRetry('the video element failed');
    };
    v.addEventListener('error', onError);
    this.player = owner;
    v.src = this.url;
    this.lastAdvance = performance.now();
    this.lastTime = -1;
    this.playMuted(owner);
  }

  close() {
    const p = this.player;
    this.player = null;
    if (!p) return;
    if (this.engine !== 'flv') {
      try {
        if (p.destroy) p.destroy();
      } catch (e) {
        console.warn('player: destroy failed', e);
      }
      return;
    }
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
    // hls.js keeps its own distance to the live edge (playback rate up to 1.5×).
    if (this.engine === 'flv' && lat != null && lat > this.hardLatency && v.buffered.length) {
      const end = v.buffered.end(v.buffered.length - 1);
      v.currentTime = Math.max(v.currentTime, end - 0.5);
    }
    if (v.paused && !v.ended && this.state === 'playing' && !this.userPaused) {
      v.play().catch(() => {});
    }
  }
}
