//! The one typed configuration: flags, `LIVEHOUSE_*` environment variables and defaults
//! (flags win over the environment). Printed at start with secrets masked.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "livehouse",
    version,
    about = "livehouse: live rooms, danmaku chat and RTMP → HTTP-FLV video in one binary.",
    long_about = "livehouse runs every role in one process on embedded defaults (SQLite, in-memory \
cache and bus, built-in media server) — just run `livehouse` — or one role per process on \
MySQL/MariaDB + Redis + Kafka (`livehouse api --database-url mysql://… --redis-url redis://… \
--kafka-brokers host:9092`). Every flag can also be set by its LIVEHOUSE_* environment variable."
)]
pub struct Cli {
    #[command(subcommand)]
    pub role: Option<Role>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Every role in one process (the default).
    All,
    /// HTTP API: accounts, rooms, lists, IM config, web pages.
    Api,
    /// Rooms: the room-list job and the rooms' viewer counts.
    Living,
    /// Chat fan-out from the bus to the gateways.
    Msg,
    /// IM gateway: TCP and WebSocket sessions.
    ImCore,
    /// Built-in media server: RTMP ingest, HTTP-FLV and RTMP playback.
    Media,
    /// Operator tasks on the configured database (`livehouse admin grant alice`), then exit.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

/// `livehouse admin …`: account tags. USER is a username, or a user id.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    /// Grants a tag to USER: `admin` (an operator: moderates any room, closes rooms, suspends
    /// accounts), `vip` (danmaku in any colour) or `anchor` (may start rooms).
    Grant {
        user: String,
        #[arg(long, default_value = "admin", value_parser = ["admin", "vip", "anchor"])]
        tag: String,
    },
    /// Takes a tag away from USER.
    Revoke {
        user: String,
        #[arg(long, default_value = "admin", value_parser = ["admin", "vip", "anchor"])]
        tag: String,
    },
    /// Prints USER's id, tags and whether the account is suspended.
    Show { user: String },
}

#[derive(Args, Debug, Clone)]
pub struct Config {
    /// Settings file: `key = value` lines named like the flags (`http-addr = 0.0.0.0:8080`),
    /// `#` comments. Flags and environment variables override it.
    #[arg(long, env = "LIVEHOUSE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// HTTP listen address (API, web pages, WebSocket, HTTP-FLV, /metrics).
    #[arg(
        long,
        env = "LIVEHOUSE_HTTP_ADDR",
        default_value = "0.0.0.0:8080",
        global = true
    )]
    pub http_addr: SocketAddr,
    /// RTMP listen address of the built-in media server.
    #[arg(
        long,
        env = "LIVEHOUSE_RTMP_ADDR",
        default_value = "0.0.0.0:1935",
        global = true
    )]
    pub rtmp_addr: SocketAddr,
    /// IM gateway TCP (binary protocol) listen address.
    #[arg(
        long,
        env = "LIVEHOUSE_IM_TCP_ADDR",
        default_value = "0.0.0.0:8085",
        global = true
    )]
    pub im_tcp_addr: SocketAddr,
    /// Folder for the embedded database and the generated JWT secret.
    #[arg(
        long,
        env = "LIVEHOUSE_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// SQL database: `mysql://user:pass@host:3306/db`, or `sqlite://path?mode=rwc`.
    /// Default: SQLite in the data dir.
    #[arg(long, env = "LIVEHOUSE_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Redis URL (`redis://127.0.0.1:6379`). Default: in-memory cache (single process only).
    #[arg(long, env = "LIVEHOUSE_REDIS_URL", global = true)]
    pub redis_url: Option<String>,
    /// Kafka bootstrap servers (`host:9092,…`). Default: in-process bus (single process only).
    #[arg(long, env = "LIVEHOUSE_KAFKA_BROKERS", global = true)]
    pub kafka_brokers: Option<String>,
    /// Prefix for every cache key, so several deployments (or test runs) can share one Redis.
    #[arg(
        long,
        env = "LIVEHOUSE_CACHE_PREFIX",
        default_value = "",
        global = true
    )]
    pub cache_prefix: String,
    /// Namespace prefixed to Kafka topic and group names, to share one broker.
    #[arg(long, env = "LIVEHOUSE_KAFKA_NAMESPACE", global = true)]
    pub kafka_namespace: Option<String>,
    /// Secret signing session tokens. Default: generated once and kept in the data dir.
    /// Processes of one deployment must share it.
    #[arg(
        long,
        env = "LIVEHOUSE_JWT_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
    /// Seconds a client has to send a request's headers, and to start its next request on a
    /// kept-alive connection, before the connection is closed (0 = no limit).
    #[arg(
        long,
        env = "LIVEHOUSE_HTTP_HEADER_TIMEOUT_SECS",
        default_value_t = 10,
        global = true
    )]
    pub http_header_timeout_secs: u64,
    /// Seconds an HTTP connection may move no byte either way (a request body sent slowly, a
    /// response not read) before it is closed (0 = no limit). WebSocket connections have the IM
    /// deadlines instead.
    #[arg(
        long,
        env = "LIVEHOUSE_HTTP_IDLE_TIMEOUT_SECS",
        default_value_t = 60,
        global = true
    )]
    pub http_idle_timeout_secs: u64,
    /// Largest request body the API routes read, in bytes (larger: 413).
    #[arg(
        long,
        env = "LIVEHOUSE_HTTP_MAX_BODY_BYTES",
        default_value_t = 65536,
        global = true
    )]
    pub http_max_body_bytes: usize,
    /// Threads hashing passwords (sign-up, sign-in), each keeping one 19 MiB argon2 buffer for
    /// the life of the process.
    #[arg(
        long,
        env = "LIVEHOUSE_AUTH_HASH_WORKERS",
        default_value_t = 2,
        global = true
    )]
    pub auth_hash_workers: usize,
    /// Sign-ups and sign-ins waiting for a hashing thread; beyond it they get 503 with
    /// `Retry-After`.
    #[arg(
        long,
        env = "LIVEHOUSE_AUTH_HASH_QUEUE",
        default_value_t = 64,
        global = true
    )]
    pub auth_hash_queue: usize,
    /// Sign-in attempts per client IP in 5 minutes; over it: 429 with `Retry-After`. Counted in the cache, so shared by every api
    /// process (0 = no limit).
    #[arg(
        long,
        env = "LIVEHOUSE_RATE_LOGIN_PER_IP",
        default_value_t = 30,
        global = true
    )]
    pub rate_login_per_ip: u32,
    /// Sign-in attempts per username in 5 minutes (a successful sign-in starts again); over it: 429 with `Retry-After`. Counted in the cache, so shared by every api
    /// process (0 = no limit).
    #[arg(
        long,
        env = "LIVEHOUSE_RATE_LOGIN_PER_ACCOUNT",
        default_value_t = 10,
        global = true
    )]
    pub rate_login_per_account: u32,
    /// Sign-ups per client IP in an hour; over it: 429 with `Retry-After`. Counted in the cache, so shared by every api
    /// process (0 = no limit).
    #[arg(
        long,
        env = "LIVEHOUSE_RATE_SIGNUP_PER_IP",
        default_value_t = 20,
        global = true
    )]
    pub rate_signup_per_ip: u32,
    /// Sign-ups per requested username in an hour; over it: 429 with `Retry-After`. Counted in the cache, so shared by every api
    /// process (0 = no limit).
    #[arg(
        long,
        env = "LIVEHOUSE_RATE_SIGNUP_PER_ACCOUNT",
        default_value_t = 5,
        global = true
    )]
    pub rate_signup_per_account: u32,
    /// IM tokens (`/im/getImConfig`) per client IP in a minute; over it: 429 with `Retry-After`. Counted in the cache, so shared by every api
    /// process (0 = no limit).
    #[arg(
        long,
        env = "LIVEHOUSE_RATE_IM_TOKEN_PER_IP",
        default_value_t = 120,
        global = true
    )]
    pub rate_im_token_per_ip: u32,
    /// IM tokens per user in a minute; over it: 429 with `Retry-After`. Counted in the cache, so shared by every api
    /// process (0 = no limit).
    #[arg(
        long,
        env = "LIVEHOUSE_RATE_IM_TOKEN_PER_ACCOUNT",
        default_value_t = 30,
        global = true
    )]
    pub rate_im_token_per_account: u32,
    /// Shared secret of the nginx-rtmp callbacks (`/media/on_publish`, `on_update`,
    /// `on_publish_done`): nginx sends it as `?secret=` in the callback URLs of `nginx/rtmp.conf`.
    /// At least 32 random bytes. Without it the callbacks answer 403 (the built-in media server
    /// does not need them).
    #[arg(
        long,
        env = "LIVEHOUSE_MEDIA_CALLBACK_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub media_callback_secret: Option<String>,
    /// The URL users reach the site by (`https://live.example.com`). With `https://` the session
    /// cookie is `Secure`. Default: taken from each request (`Secure` over TLS only).
    #[arg(long, env = "LIVEHOUSE_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Give every new account the anchor tag (may start rooms). Default: on with the embedded
    /// database, off with MySQL.
    #[arg(long, env = "LIVEHOUSE_OPEN_STREAMING", global = true, num_args = 0..=1,
          default_missing_value = "true")]
    pub open_streaming: Option<bool>,
    /// Host name shown in push and gateway addresses. Default: the host the client used.
    #[arg(long, env = "LIVEHOUSE_PUBLIC_HOST", global = true)]
    pub public_host: Option<String>,
    /// Base URL of the HTTP-FLV server viewers play from (e.g. `http://media.example:8084`),
    /// when the media server is another process or nginx. Default: the same origin as the api.
    #[arg(long, env = "LIVEHOUSE_PLAY_BASE_URL", global = true)]
    pub play_base_url: Option<String>,
    /// Folder of the web pages served at `/`.
    #[arg(long, env = "LIVEHOUSE_WEB_DIR", default_value = "web", global = true)]
    pub web_dir: PathBuf,
    /// Seconds between IM heartbeats; a session silent for two gaps is closed.
    #[arg(
        long,
        env = "LIVEHOUSE_IM_HEARTBEAT_SECS",
        default_value_t = 30,
        global = true
    )]
    pub im_heartbeat_secs: u64,
    /// Seconds a new IM connection has to log in before it is closed.
    #[arg(
        long,
        env = "LIVEHOUSE_IM_LOGIN_TIMEOUT_SECS",
        default_value_t = 10,
        global = true
    )]
    pub im_login_timeout_secs: u64,
    /// IM fan-out coalescing window in milliseconds: at most one fan-out per window, so one
    /// socket write carries every message of the window (0 = each message goes out at once;
    /// 20–100 saves CPU in rooms of thousands of viewers at ~100 msg/s, see docs/benchmarks.md).
    #[arg(
        long,
        env = "LIVEHOUSE_IM_FANOUT_LINGER_MS",
        default_value_t = 0,
        global = true
    )]
    pub im_fanout_linger_ms: u64,
    /// Recent messages each gateway keeps per room in memory, so that most recoveries after a
    /// reconnect read no chat log.
    #[arg(
        long,
        env = "LIVEHOUSE_IM_RECENT_PER_ROOM",
        default_value_t = 128,
        global = true
    )]
    pub im_recent_per_room: usize,
    /// Messages kept in each room's chat history (for history on join and recovery).
    #[arg(
        long,
        env = "LIVEHOUSE_CHAT_HISTORY_LEN",
        default_value_t = 300,
        global = true
    )]
    pub chat_history_len: usize,
    /// Seconds a chat message stays in its room's history.
    #[arg(
        long,
        env = "LIVEHOUSE_CHAT_HISTORY_SECS",
        default_value_t = 3600,
        global = true
    )]
    pub chat_history_secs: u64,
    /// Id of this IM gateway in the presence store. Default: random.
    #[arg(long, env = "LIVEHOUSE_GATEWAY_ID", global = true)]
    pub gateway_id: Option<String>,
    /// Deployment-wide blocked words, one a line (`#` comments): refused in every room's chat,
    /// case-insensitively, full-width and half-width alike.
    #[arg(long, env = "LIVEHOUSE_BLOCKED_WORDS", global = true)]
    pub blocked_words: Option<PathBuf>,
    /// Operator webhook URL (repeatable; `http://` only): JSON events stream_started,
    /// stream_stopped, room_started, room_closed, user_banned, message_deleted, signed with
    /// --webhook-secret (docs/webhooks.md). Several in the environment: comma-separated.
    #[arg(
        long = "webhook-url",
        env = "LIVEHOUSE_WEBHOOK_URL",
        global = true,
        value_delimiter = ','
    )]
    pub webhook_urls: Vec<String>,
    /// HMAC-SHA256 key signing webhooks (at least 32 characters); required with --webhook-url.
    #[arg(
        long,
        env = "LIVEHOUSE_WEBHOOK_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub webhook_secret: Option<String>,
    /// Record live video as FLV (with a keyframe index) in `<data dir>/records`: `off`, `on`
    /// (every room) or `per-room` (rooms whose streamer ticked "Record" in the studio).
    #[arg(long, env = "LIVEHOUSE_RECORD", default_value = "per-room", global = true,
          value_parser = ["off", "on", "per-room"])]
    pub record: String,
    /// Records older than this many days are deleted (0 = kept until `--record-max-gb` needs room).
    #[arg(
        long,
        env = "LIVEHOUSE_RECORD_RETENTION_DAYS",
        default_value_t = 30,
        global = true
    )]
    pub record_retention_days: u32,
    /// The records folder is kept under this many GB (10^9 bytes), oldest deleted first (0 = no cap).
    #[arg(
        long,
        env = "LIVEHOUSE_RECORD_MAX_GB",
        default_value_t = 50.0,
        global = true
    )]
    pub record_max_gb: f64,
    /// Stream health warns when a publisher's bitrate is above this (kbit/s; 0 = never).
    #[arg(
        long,
        env = "LIVEHOUSE_MAX_BITRATE",
        default_value_t = 8000,
        global = true
    )]
    pub max_bitrate: u32,
    /// Open connections one client address may hold on each listener (HTTP, IM TCP, RTMP); over
    /// it the client gets HTTP 503 or a closed socket (0 = no cap). IPv6 clients count per /64.
    #[arg(
        long,
        env = "LIVEHOUSE_MAX_CONNS_PER_IP",
        default_value_t = livehouse_core::limits::DEFAULT_PER_IP,
        global = true
    )]
    pub max_conns_per_ip: u32,
    /// Count loopback clients in the connection caps as well (by default they are exempt, so
    /// local benchmarks and a proxy on the same host keep working).
    #[arg(long, env = "LIVEHOUSE_CAP_LOOPBACK", global = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub cap_loopback: bool,
    /// Open HTTP connections in all (API, pages, WebSocket, HTTP-FLV; 0 = no cap).
    #[arg(
        long,
        env = "LIVEHOUSE_MAX_HTTP_CONNS",
        default_value_t = 10_000,
        global = true
    )]
    pub max_http_conns: usize,
    /// Open IM TCP connections in all (0 = no cap).
    #[arg(
        long,
        env = "LIVEHOUSE_MAX_IM_TCP_CONNS",
        default_value_t = 6_000,
        global = true
    )]
    pub max_im_tcp_conns: usize,
    /// Open RTMP connections in all, publishers and players (0 = no cap).
    #[arg(
        long,
        env = "LIVEHOUSE_MAX_RTMP_CONNS",
        default_value_t = 1_000,
        global = true
    )]
    pub max_rtmp_conns: usize,
    /// A reverse proxy (address or block, e.g. `10.0.0.0/8`; repeatable) whose
    /// `X-Forwarded-For` names the client, for the per-address caps and limits. Without it the
    /// header is ignored. Several in the environment: comma-separated.
    #[arg(
        long = "trusted-proxy",
        env = "LIVEHOUSE_TRUSTED_PROXY",
        global = true,
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<livehouse_core::limits::IpNet>,
}

/// Loads the settings file named by `--config FILE` / `--config=FILE` / `LIVEHOUSE_CONFIG` into
/// `LIVEHOUSE_*` environment variables that are not set yet, before the flags are parsed, so the
/// precedence is flag > environment > file > default.
pub fn load_file_into_env(args: &[String]) -> Result<(), String> {
    let from_args = args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--config=").map(str::to_string).or_else(|| {
            (a == "--config")
                .then(|| args.get(i + 1).cloned())
                .flatten()
        })
    });
    let Some(path) = from_args.or_else(|| std::env::var("LIVEHOUSE_CONFIG").ok()) else {
        return Ok(());
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("{path}:{}: expected `key = value`", n + 1))?;
        let key = key.trim().trim_start_matches("--");
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!("{path}:{}: bad key `{key}`", n + 1));
        }
        let var = format!("LIVEHOUSE_{}", key.replace('-', "_").to_ascii_uppercase());
        if std::env::var_os(&var).is_none() {
            std::env::set_var(var, value.trim().trim_matches('"'));
        }
    }
    Ok(())
}

impl Config {
    /// The caps of one listener, `total` in all (0: none).
    pub fn conn_caps(&self, total: usize) -> livehouse_core::limits::ConnCaps {
        livehouse_core::limits::ConnCaps {
            per_ip: self.max_conns_per_ip,
            total,
            cap_loopback: self.cap_loopback,
            trusted: livehouse_core::limits::TrustedProxies::new(self.trusted_proxies.clone()),
        }
    }

    pub fn embedded_db(&self) -> bool {
        self.database_url.is_none()
    }

    pub fn open_streaming(&self) -> bool {
        self.open_streaming.unwrap_or(self.embedded_db())
    }

    /// One line per setting, secrets masked.
    pub fn describe(&self) -> String {
        let mask_url = |u: &Option<String>, default: &str| match u {
            None => default.to_string(),
            Some(u) => match (u.find("://"), u.rfind('@')) {
                (Some(s), Some(at)) if at > s => {
                    let creds = &u[s + 3..at];
                    match creds.split_once(':') {
                        Some((user, _)) => format!("{}{user}:***{}", &u[..s + 3], &u[at..]),
                        None => u.clone(),
                    }
                }
                _ => u.clone(),
            },
        };
        format!(
            "http_addr={} rtmp_addr={} im_tcp_addr={} data_dir={} database={} cache={} bus={} \
             jwt_secret={} media_callback_secret={} public_url={} open_streaming={} \
             public_host={} web_dir={} im_heartbeat_secs={} \
             blocked_words={} webhook_urls={} webhook_secret={} record={} \
             record_retention_days={} record_max_gb={} max_bitrate={} \
             http_header_timeout_secs={} http_idle_timeout_secs={} http_max_body_bytes={} \
             max_conns_per_ip={} cap_loopback={} max_http_conns={} max_im_tcp_conns={} \
             max_rtmp_conns={} trusted_proxies={}",
            self.http_addr,
            self.rtmp_addr,
            self.im_tcp_addr,
            self.data_dir.display(),
            mask_url(&self.database_url, "sqlite (data dir)"),
            mask_url(&self.redis_url, "memory"),
            self.kafka_brokers
                .clone()
                .unwrap_or_else(|| "memory".into()),
            if self.jwt_secret.is_some() {
                "***"
            } else {
                "(data dir)"
            },
            if self.media_callback_secret.is_some() {
                "***"
            } else {
                "(none: nginx callbacks off)"
            },
            self.public_url.as_deref().unwrap_or("(request)"),
            self.open_streaming(),
            self.public_host
                .clone()
                .unwrap_or_else(|| "(request host)".into()),
            self.web_dir.display(),
            self.im_heartbeat_secs,
            self.blocked_words
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(none)".into()),
            self.webhook_urls.len(),
            if self.webhook_secret.is_some() {
                "***"
            } else {
                "(none)"
            },
            self.record,
            self.record_retention_days,
            self.record_max_gb,
            self.max_bitrate,
            self.http_header_timeout_secs,
            self.http_idle_timeout_secs,
            self.http_max_body_bytes,
            self.max_conns_per_ip,
            self.cap_loopback,
            self.max_http_conns,
            self.max_im_tcp_conns,
            self.max_rtmp_conns,
            if self.trusted_proxies.is_empty() {
                "(none)".to_string()
            } else {
                self.trusted_proxies
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_ones_and_secrets_are_masked() {
        let cli = Cli::try_parse_from(["livehouse"]).unwrap();
        assert!(cli.role.is_none());
        assert_eq!(cli.config.http_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(cli.config.rtmp_addr.port(), 1935);
        assert_eq!(cli.config.im_tcp_addr.port(), 8085);
        assert_eq!(cli.config.record, "per-room");
        assert_eq!(cli.config.http_header_timeout_secs, 10);
        assert_eq!(cli.config.http_idle_timeout_secs, 60);
        assert_eq!(cli.config.http_max_body_bytes, 64 * 1024);
        assert!(Cli::try_parse_from(["livehouse", "--record", "sometimes"]).is_err());
        assert!(cli.config.open_streaming(), "on with the embedded database");
        let cli = Cli::try_parse_from([
            "livehouse",
            "api",
            "--database-url",
            "mysql://root:hunter2@db:3306/live",
            "--jwt-secret",
            "topsecret",
        ])
        .unwrap();
        assert_eq!(cli.role, Some(Role::Api));
        assert!(!cli.config.open_streaming(), "off with MySQL unless asked");
        let text = cli.config.describe();
        assert!(
            !text.contains("hunter2") && !text.contains("topsecret"),
            "{text}"
        );
        assert!(text.contains("mysql://root:***@db:3306/live"), "{text}");
    }

    #[test]
    fn admin_grant_parses_with_the_database_flags_and_webhook_urls_repeat() {
        let cli = Cli::try_parse_from([
            "livehouse",
            "admin",
            "grant",
            "alice",
            "--tag",
            "vip",
            "--database-url",
            "mysql://root@db/live",
        ])
        .unwrap();
        assert_eq!(
            cli.role,
            Some(Role::Admin {
                command: AdminCommand::Grant {
                    user: "alice".into(),
                    tag: "vip".into()
                }
            })
        );
        assert_eq!(
            cli.config.database_url.as_deref(),
            Some("mysql://root@db/live")
        );
        assert!(
            Cli::try_parse_from(["livehouse", "admin", "grant", "bob", "--tag", "king"]).is_err()
        );
        let cli = Cli::try_parse_from([
            "livehouse",
            "--webhook-url",
            "http://a/h",
            "--webhook-url",
            "http://b/h",
            "--webhook-secret",
            "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t",
        ])
        .unwrap();
        assert_eq!(cli.config.webhook_urls, ["http://a/h", "http://b/h"]);
        let text = cli.config.describe();
        assert!(
            !text.contains("s3cr3t") && text.contains("webhook_urls=2"),
            "{text}"
        );
    }

    #[test]
    fn connection_caps_have_internet_defaults_and_parse_proxies() {
        let cli = Cli::try_parse_from(["livehouse"]).unwrap();
        let caps = cli.config.conn_caps(cli.config.max_http_conns);
        assert_eq!(caps.per_ip, 200);
        assert!(!caps.cap_loopback, "loopback is exempt by default");
        assert!(
            caps.trusted.is_empty(),
            "no X-Forwarded-For is believed by default"
        );
        let c = &cli.config;
        assert!(
            c.max_http_conns + c.max_im_tcp_conns + c.max_rtmp_conns < 20_000,
            "the totals fit under a 20,000 open-files limit"
        );
        let cli = Cli::try_parse_from([
            "livehouse",
            "--cap-loopback",
            "--max-conns-per-ip",
            "0",
            "--trusted-proxy",
            "10.0.0.0/8",
            "--trusted-proxy",
            "192.0.2.1",
        ])
        .unwrap();
        let caps = cli.config.conn_caps(5);
        assert!(caps.cap_loopback && caps.per_ip == 0 && caps.total == 5);
        assert!(caps.trusted.contains("10.9.8.7".parse().unwrap()));
        assert!(caps.trusted.contains("192.0.2.1".parse().unwrap()));
        assert!(!caps.trusted.contains("192.0.2.2".parse().unwrap()));
        assert!(cli
            .config
            .describe()
            .contains("trusted_proxies=10.0.0.0/8,192.0.2.1/32"));
        assert!(
            Cli::try_parse_from(["livehouse", "--cap-loopback", "false"])
                .is_ok_and(|c| !c.config.cap_loopback)
        );
        let bad = Cli::try_parse_from(["livehouse", "--trusted-proxy", "proxy.example"]);
        assert!(bad.is_err(), "a host name is a clear error, not a guess");
    }
}
