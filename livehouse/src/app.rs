//! Wiring: connect the backends the configuration names, start the tasks of the chosen role(s),
//! serve one HTTP server with the routers they contribute, and stop everything on SIGINT/SIGTERM.

use crate::adapters::{LocalFirstDelivery, MediaHealth, RoomsStreamAuth};
use crate::config::{Config, Role};
use crate::http_caps::CappedListener;
use anyhow::Context;
use axum::Router;
use livehouse_api::accounts::suspension::Suspensions;
use livehouse_api::webhooks::{WebhookConfig, Webhooks};
use livehouse_api::{ApiConfig, ApiState};
use livehouse_core::auth::{check_secret, InternalTokens, JwtKeys};
use livehouse_core::bus::{Bus, MemoryBus};
use livehouse_core::cache::{Cache, MemoryCache, RedisCache};
use livehouse_core::chatlog::{ChatLog, LogConfig, MemoryChatLog, RedisChatLog};
use livehouse_core::limits::ConnLimiter;
use livehouse_core::presence::{MemoryPresence, Presence, PresenceConfig, RedisPresence};
use livehouse_core::{db, Backends};
use livehouse_im_core::{Gateway, ImConfig, ImPorts};
use livehouse_living::{LivingService, ModerationService};
use livehouse_media::{MediaOptions, MediaServer, RecordConfig, RecordMode, StreamAuth};
use livehouse_msg::{GatewayDelivery, HttpDelivery, Msg, MsgConfig, MsgPorts};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A cloneable "stop now" signal for every task.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

async fn connect(cfg: &Config) -> anyhow::Result<Backends> {
    let url = match &cfg.database_url {
        Some(u) => u.clone(),
        None => db::sqlite_url(&cfg.data_dir),
    };
    let database = db::connect(&url)
        .await
        .context("opening the SQL database")?;
    let cache: Arc<dyn Cache> = match &cfg.redis_url {
        Some(u) => Arc::new(
            RedisCache::connect(u, &cfg.cache_prefix)
                .await
                .with_context(|| format!("connecting to Redis at {u}"))?,
        ),
        None => Arc::new(MemoryCache::new()),
    };
    let bus: Arc<dyn Bus> = match &cfg.kafka_brokers {
        Some(b) => connect_kafka(b, cfg.kafka_namespace.as_deref()).await?,
        None => Arc::new(MemoryBus::new()),
    };
    let log_cfg = LogConfig {
        max_len: cfg.chat_history_len.max(1),
        max_age: Duration::from_secs(cfg.chat_history_secs.max(1)),
        ..LogConfig::default()
    };
    let (presence, chatlog): (Arc<dyn Presence>, Arc<dyn ChatLog>) = match &cfg.redis_url {
        Some(u) => (
            Arc::new(
                RedisPresence::connect(u, &cfg.cache_prefix, PresenceConfig::default())
                    .await
                    .with_context(|| format!("connecting the presence store to Redis at {u}"))?,
            ),
            Arc::new(
                RedisChatLog::connect(u, &cfg.cache_prefix, log_cfg)
                    .await
                    .with_context(|| format!("connecting the chat log to Redis at {u}"))?,
            ),
        ),
        None => (
            Arc::new(MemoryPresence::default()),
            Arc::new(MemoryChatLog::new(log_cfg)),
        ),
    };
    Ok(Backends {
        db: database,
        cache,
        bus,
        presence,
        chatlog,
    })
}

async fn connect_kafka(brokers: &str, namespace: Option<&str>) -> anyhow::Result<Arc<dyn Bus>> {
    let mut bus = livehouse_core::bus::KafkaBus::connect(brokers, "livehouse")
        .await
        .with_context(|| format!("connecting to Kafka at {brokers}"))?;
    if let Some(ns) = namespace {
        bus = bus.with_namespace(ns);
    }
    Ok(Arc::new(bus))
}

/// The deployment secret (signs sessions, derives the internal token): given, or read from (or
/// generated into) the data dir. A given secret must pass [`check_secret`]: the process refuses
/// to start with a weak one.
fn jwt_secret(cfg: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = &cfg.jwt_secret {
        check_secret("--jwt-secret", s).map_err(anyhow::Error::msg)?;
        return Ok(s.as_bytes().to_vec());
    }
    let path = cfg.data_dir.join("jwt.secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        // Generated here before (64 hex digits); a weak file is replaced.
        if check_secret("jwt.secret", s.trim()).is_ok() {
            return Ok(s.trim().as_bytes().to_vec());
        }
        tracing::warn!("{} is weak: a new secret replaces it", path.display());
    }
    let secret = livehouse_core::ids::random_hex(32);
    std::fs::write(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(secret.into_bytes())
}

/// The pre-login rate limits of the flags (windows: sign-in 5 min, sign-up 1 h, IM token 1 min).
fn rate_limits(cfg: &Config) -> livehouse_api::ratelimit::RateLimits {
    use livehouse_api::ratelimit::{
        Limit, RateLimits, IM_TOKEN_WINDOW_SECS, LOGIN_WINDOW_SECS, SIGNUP_WINDOW_SECS,
    };
    RateLimits {
        login_per_ip: Limit::new(cfg.rate_login_per_ip, LOGIN_WINDOW_SECS),
        login_per_account: Limit::new(cfg.rate_login_per_account, LOGIN_WINDOW_SECS),
        signup_per_ip: Limit::new(cfg.rate_signup_per_ip, SIGNUP_WINDOW_SECS),
        signup_per_account: Limit::new(cfg.rate_signup_per_account, SIGNUP_WINDOW_SECS),
        im_token_per_ip: Limit::new(cfg.rate_im_token_per_ip, IM_TOKEN_WINDOW_SECS),
        im_token_per_account: Limit::new(cfg.rate_im_token_per_account, IM_TOKEN_WINDOW_SECS),
    }
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

/// Routes every role serves: health and metrics.
fn ops_router(backends: &Backends, metrics: PrometheusHandle) -> Router {
    use axum::routing::get;
    let db = backends.db.clone();
    let cache = backends.cache.clone();
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let (db, cache) = (db.clone(), cache.clone());
                async move {
                    use axum::http::StatusCode;
                    if db.ping().await.is_err() {
                        return (StatusCode::SERVICE_UNAVAILABLE, "database down");
                    }
                    if cache.get("readyz").await.is_err() {
                        return (StatusCode::SERVICE_UNAVAILABLE, "cache down");
                    }
                    (StatusCode::OK, "ready")
                }
            }),
        )
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
}

pub async fn run(role: Role, cfg: Config) -> anyhow::Result<()> {
    tracing::info!(role = ?role, "starting livehouse {}", env!("CARGO_PKG_VERSION"));
    tracing::info!("config: {}", cfg.describe());
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
    // Gauges not updated for 30 s leave /metrics: per-room stream gauges exist for live rooms
    // only (every gauge of the process is refreshed every 5 s).
    let metrics = PrometheusBuilder::new()
        .idle_timeout(
            metrics_util::MetricKindMask::GAUGE,
            Some(Duration::from_secs(30)),
        )
        .install_recorder()
        .context("installing the metrics recorder")?;
    let backends = connect(&cfg).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let shutdown = Shutdown(stop_rx);
    let has = |r: Role| role == Role::All || role == r;

    // Schemas: the roles that read SQL migrate their own tables.
    if has(Role::Api) || has(Role::Living) || has(Role::Media) {
        livehouse_living::migrate(&backends.db)
            .await
            .context("migrating the rooms tables")?;
    }
    if has(Role::Api) {
        livehouse_api::migrate(&backends.db)
            .await
            .context("migrating the users table")?;
    }
    let living = LivingService::new(backends.db.clone(), backends.cache.clone());
    if role != Role::All && cfg.jwt_secret.is_none() {
        tracing::warn!(
            "no --jwt-secret: this process uses the secret in its own data dir; processes of one \
             deployment must share a secret, or sessions and internal calls fail across them"
        );
    }
    let secret = jwt_secret(&cfg)?;
    let jwt = JwtKeys::new(&secret);
    // Role-to-role calls (msg → gateway push) carry a token of their own derivation, minted
    // per 5-minute window.
    let internal_tokens = InternalTokens::new(&secret);
    drop(secret);
    if let Some(u) = &cfg.public_url {
        let lower = u.to_ascii_lowercase();
        anyhow::ensure!(
            (lower.starts_with("https://") || lower.starts_with("http://"))
                && livehouse_api::web::origin_of(&lower).is_some(),
            "--public-url must be an http:// or https:// URL, got `{u}`"
        );
    }
    let media_callback_secret = match &cfg.media_callback_secret {
        Some(s) => {
            check_secret("--media-callback-secret", s).map_err(anyhow::Error::msg)?;
            Some(s.clone())
        }
        None => None,
    };
    let http_listener = bind(cfg.http_addr, "HTTP").await?;
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    // Operator webhooks: every role that changes rooms or streams tells them (api: rooms and
    // moderation; media: streams), each process from its own queue.
    let living = if cfg.webhook_urls.is_empty() {
        living
    } else {
        let secret = cfg
            .webhook_secret
            .clone()
            .context("--webhook-url needs --webhook-secret")?;
        let config = WebhookConfig::new(cfg.webhook_urls.clone(), secret);
        config.validate().map_err(anyhow::Error::msg)?;
        let (hooks, dispatcher) = Webhooks::new(config);
        let stop = shutdown.wait();
        tasks.spawn(async move {
            dispatcher.run(stop).await;
            Ok(())
        });
        living.with_notifier(hooks)
    };
    let moderation = ModerationService::new(living.clone(), backends.bus.clone());
    let mut http = Router::new();
    // Connection caps, one limiter per listener (design §4): HTTP (API, pages, WebSocket,
    // HTTP-FLV), IM TCP, RTMP.
    let http_limiter = ConnLimiter::new("http", cfg.conn_caps(cfg.max_http_conns));
    let mut limiters = vec![http_limiter.clone()];
    let stream_auth: Arc<dyn StreamAuth> = Arc::new(RoomsStreamAuth(living.clone()));
    let heartbeat_gap = Duration::from_secs(cfg.im_heartbeat_secs.max(1));
    // The media server is built before the api so that, in one process, the api reads its
    // stream health; it serves RTMP and its routes only with the media role.
    let media = has(Role::Media).then(|| {
        let rtmp_limiter = ConnLimiter::new("rtmp", cfg.conn_caps(cfg.max_rtmp_conns));
        limiters.push(rtmp_limiter.clone());
        let record = RecordConfig {
            mode: match cfg.record.as_str() {
                "on" => RecordMode::On,
                "off" => RecordMode::Off,
                _ => RecordMode::PerRoom,
            },
            dir: cfg.data_dir.join("records"),
            retention_days: cfg.record_retention_days,
            max_bytes: (cfg.record_max_gb.max(0.0) * 1e9) as u64,
        };
        MediaServer::with_options(
            stream_auth.clone(),
            MediaOptions {
                record: Some(record),
                max_bitrate_kbps: cfg.max_bitrate,
                rtmp_limiter: Some(rtmp_limiter.clone()),
                ..MediaOptions::default()
            },
        )
    });

    if has(Role::Api) {
        let suspensions = Suspensions::new();
        suspensions
            .reload(&backends.db)
            .await
            .map_err(|e| anyhow::anyhow!("reading suspended accounts: {e}"))?;
        let (s, db, stop) = (suspensions.clone(), backends.db.clone(), shutdown.wait());
        tasks.spawn(async move {
            s.run(db, stop).await;
            Ok(())
        });
        let state = ApiState {
            db: backends.db.clone(),
            cache: backends.cache.clone(),
            presence: backends.presence.clone(),
            chatlog: backends.chatlog.clone(),
            chooser: Default::default(),
            living: living.clone(),
            bus: backends.bus.clone(),
            moderation: moderation.clone(),
            suspensions,
            jwt: jwt.clone(),
            passwords: livehouse_api::accounts::passwords::Passwords::start(
                cfg.auth_hash_workers,
                cfg.auth_hash_queue,
            ),
            config: Arc::new(ApiConfig {
                open_streaming: cfg.open_streaming(),
                rtmp_port: cfg.rtmp_addr.port(),
                public_host: cfg.public_host.clone(),
                im_heartbeat_secs: cfg.im_heartbeat_secs.max(1),
                play_base_url: cfg
                    .play_base_url
                    .clone()
                    .map(|u| u.trim_end_matches('/').to_string()),
                web_dir: cfg.web_dir.is_dir().then(|| cfg.web_dir.clone()),
                record_mode: cfg.record.clone(),
                max_bitrate_kbps: cfg.max_bitrate,
                max_body_bytes: cfg.http_max_body_bytes.max(1),
                rate: rate_limits(&cfg),
                secure_cookies: cfg
                    .public_url
                    .as_deref()
                    .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://")),
            }),
            metrics: Some(metrics.clone()),
            media: media
                .clone()
                .map(|m| Arc::new(MediaHealth(m)) as Arc<dyn livehouse_api::StreamHealthSource>),
        };
        if !cfg.web_dir.is_dir() {
            tracing::warn!(
                "web dir {} not found: no web pages are served",
                cfg.web_dir.display()
            );
        }
        // nginx-rtmp's on_publish callbacks check stream keys here (production video path).
        http = http
            .merge(
                livehouse_media::nginx_hooks_router(
                    stream_auth.clone(),
                    media_callback_secret.clone(),
                )
                .layer(axum::extract::DefaultBodyLimit::max(
                    cfg.http_max_body_bytes.max(1),
                )),
            )
            .merge(livehouse_api::router(state));
    } else {
        http = http.merge(ops_router(&backends, metrics.clone()));
    }

    if has(Role::Living) {
        let (svc, presence, stop) = (living.clone(), backends.presence.clone(), shutdown.wait());
        tasks.spawn(async move {
            livehouse_living::lists::run(svc, Some(presence), stop).await;
            Ok(())
        });
        let (svc, stop) = (moderation.clone(), shutdown.wait());
        tasks.spawn(async move {
            livehouse_living::moderation::sync::run(svc, stop).await;
            Ok(())
        });
    }

    let mut gateway = None;
    if has(Role::ImCore) {
        // The deployment-wide blocked words: read (and checked) at start.
        let words = match &cfg.blocked_words {
            Some(path) => {
                let words = livehouse_moderation::WordFilter::from_file(path)?;
                tracing::info!(words = words.len(), file = %path.display(), "deployment-wide blocked words");
                words
            }
            None => livehouse_moderation::WordFilter::default(),
        };
        let rules = livehouse_moderation::RuleBook::new(backends.cache.clone(), words);
        let im_listener = bind(cfg.im_tcp_addr, "IM TCP").await?;
        let im_tcp_limiter = ConnLimiter::new("im_tcp", cfg.conn_caps(cfg.max_im_tcp_conns));
        limiters.push(im_tcp_limiter.clone());
        let shown = |addr: std::net::SocketAddr| match &cfg.public_host {
            Some(h) => format!("{h}:{}", addr.port()),
            None => addr.to_string(),
        };
        let reachable = |addr: std::net::SocketAddr| match &cfg.public_host {
            Some(h) => format!("{h}:{}", addr.port()),
            None if addr.ip().is_unspecified() => format!("127.0.0.1:{}", addr.port()),
            None => addr.to_string(),
        };
        let http_addr = http_listener.local_addr()?;
        let tokens = internal_tokens.clone();
        let im_cfg = ImConfig {
            gateway_id: cfg
                .gateway_id
                .clone()
                .unwrap_or_else(|| format!("im-{}", livehouse_core::ids::random_hex(4))),
            tcp_addr_public: shown(im_listener.local_addr()?),
            ws_addr_public: format!("ws://{}/ws", shown(http_addr)),
            push_url: format!("http://{}", reachable(http_addr)),
            heartbeat_gap,
            login_timeout: Duration::from_secs(cfg.im_login_timeout_secs.max(1)),
            internal_auth: Some(Arc::new(move |given: &str| tokens.verify_now(given))),
            tcp_limiter: Some(im_tcp_limiter.clone()),
            fanout_linger: Duration::from_millis(cfg.im_fanout_linger_ms),
            recent_per_room: cfg.im_recent_per_room,
            ..ImConfig::default()
        };
        anyhow::ensure!(
            !im_cfg.gateway_id.contains('/'),
            "--gateway-id must not contain '/'"
        );
        tracing::info!(gateway = %im_cfg.gateway_id, tcp = %im_cfg.tcp_addr_public, "IM gateway");
        let gw = Gateway::new(
            im_cfg,
            ImPorts {
                cache: backends.cache.clone(),
                bus: backends.bus.clone(),
                presence: backends.presence.clone(),
                log: backends.chatlog.clone(),
                moderation: rules,
            },
        );
        http = http.merge(gw.router());
        tasks.spawn(gw.clone().serve_tcp(im_listener, shutdown.wait()));
        let (g, stop) = (gw.clone(), shutdown.wait());
        tasks.spawn(async move {
            g.run_registration(stop).await;
            Ok(())
        });
        tasks.spawn(gw.clone().run_control(shutdown.wait()));
        // Events bring rule changes at once; the refresh is the safety net for a lost one, so
        // a rule holds on every gateway within a second either way.
        let (g, stop) = (gw.clone(), shutdown.wait());
        tasks.spawn(async move {
            g.run_moderation(Duration::from_secs(1), stop).await;
            Ok(())
        });
        let (g, stop) = (gw.clone(), shutdown.wait());
        tasks.spawn(async move {
            export_gateway_metrics(g, stop).await;
            Ok(())
        });
        gateway = Some(gw);
    }

    if has(Role::Msg) {
        let tokens = internal_tokens.clone();
        let remote = HttpDelivery::new(Arc::new(move || tokens.current()))?;
        let delivery: Arc<dyn GatewayDelivery> = match &gateway {
            Some(local) => Arc::new(LocalFirstDelivery {
                local: local.clone(),
                remote,
            }),
            None => Arc::new(remote),
        };
        let m = Msg::subscribe(
            MsgConfig::default(),
            MsgPorts {
                bus: backends.bus.clone(),
                log: backends.chatlog.clone(),
                presence: backends.presence.clone(),
            },
            delivery,
        )
        .await
        .context("subscribing to chat")?;
        tasks.spawn(m.run(shutdown.wait()));
    }

    if let Some(media) = media {
        let rtmp_listener = bind(cfg.rtmp_addr, "RTMP").await?;
        tracing::info!(
            "RTMP listening on rtmp://{}/live",
            rtmp_listener.local_addr()?
        );
        http = http.merge(media.http_router());
        let (m, stop) = (media.clone(), shutdown.wait());
        tasks.spawn(async move {
            m.run_housekeeping(stop).await;
            Ok(())
        });
        tasks.spawn(media.serve_rtmp(rtmp_listener, shutdown.wait()));
    }

    let addr = http_listener.local_addr()?;
    tracing::info!("HTTP listening on http://{addr}");
    let stop = shutdown.wait();
    let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
    let limits = crate::http::HttpLimits {
        header_timeout: secs(cfg.http_header_timeout_secs),
        idle_timeout: secs(cfg.http_idle_timeout_secs),
    };
    tasks.spawn(async move {
        export_conn_metrics(limiters, stop).await;
        Ok(())
    });
    let stop = shutdown.wait();
    // Connection caps: counted per TCP connection at accept, and per request for the clients
    // of a trusted proxy (which also resolves every request's client address).
    let http = http.layer(axum::middleware::from_fn_with_state(
        http_limiter.clone(),
        crate::http_caps::per_client,
    ));
    let http_listener = CappedListener::new(http_listener, http_limiter);
    tasks.spawn(async move {
        crate::http::serve(http_listener, http, limits, stop)
            .await
            .context("HTTP server")
    });

    // Run until a signal, or until a task fails.
    let failed = tokio::select! {
        _ = signal() => { tracing::info!("shutting down"); None }
        Some(res) = tasks.join_next() => match res {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(anyhow::anyhow!("task panicked: {e}")),
        },
    };
    let _ = stop_tx.send(true);
    if let Some(gw) = &gateway {
        gw.close_all();
    }
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within 10 s");
    }

    backends.db.close().await.ok();
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Keeps the `livehouse_conns_open` gauges on /metrics (idle gauges expire after 30 s).
async fn export_conn_metrics(limiters: Vec<Arc<ConnLimiter>>, shutdown: impl Future<Output = ()>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        for l in &limiters {
            l.export();
        }
    }
}

/// Copies the gateway's counters into Prometheus gauges every 5 s.
async fn export_gateway_metrics(gw: Arc<Gateway>, shutdown: impl Future<Output = ()>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        let s = gw.stats();
        for (name, v) in [
            ("livehouse_im_connections", s.connections),
            ("livehouse_im_sessions", s.sessions),
            ("livehouse_im_delivered_total", s.delivered),
            ("livehouse_im_retried_total", s.retried),
            ("livehouse_im_unacked_dropped_total", s.unacked_dropped),
            ("livehouse_im_slow_kicked_total", s.slow_kicked),
            ("livehouse_im_idle_closed_total", s.idle_closed),
            ("livehouse_im_login_timed_out_total", s.login_timed_out),
            ("livehouse_im_chat_published_total", s.chat_published),
            ("livehouse_im_publish_failed_total", s.publish_failed),
            ("livehouse_im_events_dropped_total", s.events_dropped),
            ("livehouse_im_recover_asked_total", s.recover_asked),
            ("livehouse_im_recovered_total", s.recovered),
            ("livehouse_im_repaired_total", s.repaired),
            ("livehouse_im_lost_total", s.lost),
            ("livehouse_im_write_lag_p99_ms", s.write_lag_p99_ms),
        ] {
            metrics::gauge!(name).set(v as f64);
        }
    }
}

async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
