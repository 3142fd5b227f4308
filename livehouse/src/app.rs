//! Wiring: connect the backends the configuration names, start the tasks of the chosen role(s),
//! serve one HTTP server with the routers they contribute, and stop everything on SIGINT/SIGTERM.

use crate::config::{Config, Role};
use anyhow::Context;
use axum::Router;
use livehouse_api::{ApiConfig, ApiState};
use livehouse_core::auth::JwtKeys;
use livehouse_core::bus::{Bus, MemoryBus};
use livehouse_core::cache::{Cache, MemoryCache, RedisCache};
use livehouse_core::{db, Backends};
use livehouse_living::LivingService;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::future::Future;
use std::sync::Arc;
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
    let database = db::connect(&url).await.context("opening the SQL database")?;
    let cache: Arc<dyn Cache> = match &cfg.redis_url {
        Some(u) => Arc::new(
            RedisCache::connect(u, "").await.with_context(|| format!("connecting to Redis at {u}"))?,
        ),
        None => Arc::new(MemoryCache::new()),
    };
    let bus: Arc<dyn Bus> = match &cfg.kafka_brokers {
        Some(b) => connect_kafka(b).await?,
        None => Arc::new(MemoryBus::new()),
    };
    Ok(Backends { db: database, cache, bus })
}

async fn connect_kafka(brokers: &str) -> anyhow::Result<Arc<dyn Bus>> {
    let bus = livehouse_core::bus::KafkaBus::connect(brokers, "livehouse")
        .await
        .with_context(|| format!("connecting to Kafka at {brokers}"))?;
    Ok(Arc::new(bus))
}

/// The JWT secret: given, or read from (or generated into) the data dir.
fn jwt_secret(cfg: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = &cfg.jwt_secret {
        anyhow::ensure!(s.len() >= 16, "--jwt-secret must be at least 16 characters");
        return Ok(s.as_bytes().to_vec());
    }
    let path = cfg.data_dir.join("jwt.secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        if s.trim().len() >= 32 {
            return Ok(s.trim().as_bytes().to_vec());
        }
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

async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen for {what} on {addr}"))
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
        .route("/metrics", get(move || std::future::ready(metrics.render())))
}

pub async fn run(role: Role, cfg: Config) -> anyhow::Result<()> {
    tracing::info!(role = ?role, "starting livehouse {}", env!("CARGO_PKG_VERSION"));
    tracing::info!("config: {}", cfg.describe());
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
    let metrics = PrometheusBuilder::new()
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
        livehouse_api::migrate(&backends.db).await.context("migrating the users table")?;
    }
    let living = LivingService::new(backends.db.clone(), backends.cache.clone());
    let http_listener = bind(cfg.http_addr, "HTTP").await?;
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let mut http = Router::new();

    if has(Role::Api) {
        let state = ApiState {
            db: backends.db.clone(),
            cache: backends.cache.clone(),
            living: living.clone(),
            jwt: JwtKeys::new(&jwt_secret(&cfg)?),
            config: Arc::new(ApiConfig {
                open_streaming: cfg.open_streaming(),
                rtmp_port: cfg.rtmp_addr.port(),
                public_host: cfg.public_host.clone(),
                web_dir: cfg.web_dir.is_dir().then(|| cfg.web_dir.clone()),
            }),
            metrics: Some(metrics.clone()),
        };
        if !cfg.web_dir.is_dir() {
            tracing::warn!("web dir {} not found: no web pages are served", cfg.web_dir.display());
        }
        http = http.merge(livehouse_api::router(state));
    } else {
        http = http.merge(ops_router(&backends, metrics.clone()));
    }
    if has(Role::Living) {
        let (svc, stop) = (living.clone(), shutdown.wait());
        tasks.spawn(async move {
            livehouse_living::lists::run(svc, stop).await;
            Ok(())
        });
    }

    let addr = http_listener.local_addr()?;
    tracing::info!("HTTP listening on http://{addr}");
    let stop = shutdown.wait();
    tasks.spawn(async move {
        axum::serve(http_listener, http.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .with_graceful_shutdown(stop)
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
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(10), drain).await.is_err() {
        tracing::warn!("some tasks did not stop within 10 s");
    }
    backends.db.close().await.ok();
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
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
