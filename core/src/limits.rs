//! Connection caps and the client's address, shared by every listener (design §4 "Trust").
//!
//! Owns:
//! - [`ConnLimiter`]: one per listener (HTTP, IM TCP, RTMP), a count of open connections in all
//!   and per client address, handed out as RAII [`ConnGuard`]s, so a connection's slot is
//!   given back however its task ends (even by a panic). Over a cap it refuses, counts the
//!   refusal in `livehouse_conn_refused_total{listener, reason}` and leaves the answer (HTTP 503,
//!   a close) to the listener; `livehouse_conns_open{listener}` is the number open.
//! - [`client_ip`]: who a request is from, trusting `X-Forwarded-For` only when the TCP peer is a
//!   configured proxy ([`TrustedProxies`]), and [`ClientIp`], the resolved address the HTTP
//!   server puts in each request's extensions (for per-IP rate limits).
//!
//! Rules: loopback clients are exempt unless [`ConnCaps::cap_loopback`] (local benchmarks, a proxy
//! on the same host); a trusted proxy is exempt from the per-IP cap of its connections (its
//! clients are counted per request instead, [`ConnLimiter::try_forwarded`]); IPv6 clients are
//! counted per /64, the block one subscriber usually holds; 0 turns a cap off.
//!
//! Must not: know HTTP (callers pass the header's text), block, or hold its lock longer than one
//! map update.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;

/// Default cap of connections per client address on each listener.
pub const DEFAULT_PER_IP: u32 = 200;

/// An address block, `10.0.0.0/8`, `fd00::/8`, or one address (`192.0.2.1`, `::1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = canonical(
            addr.parse::<IpAddr>()
                .map_err(|_| format!("`{s}` is not an IP address or block (10.0.0.0/8)"))?,
        );
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0..={max}"))?,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The proxies whose `X-Forwarded-For` is believed (`--trusted-proxy`). Empty: none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies(nets)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The client address of a request, as resolved by the HTTP server (see [`client_ip`]); in the
/// request's extensions for handlers and layers that limit per client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

/// Who a request is from. The TCP `peer`, unless it is a trusted proxy: then the
/// `X-Forwarded-For` values (each header's text, in order) are read from the right, skipping
/// trusted proxies, and the first other address is the client (what nginx's `real_ip_recursive`
/// does). A list of trusted proxies only gives its leftmost address; an entry that is not an
/// address stops the walk at the hop to its right, so a client cannot pick its address by
/// writing one in front of the proxy's.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    trusted: &TrustedProxies,
) -> IpAddr {
    let peer = canonical(peer);
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for
        .into_iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            break;
        };
        client = ip;
        if !trusted.contains(ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`192.0.2.1:443`,
/// `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    hop.parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| canonical(a.ip()))
}

/// IPv4-mapped IPv6 addresses (a dual-stack socket's view of IPv4 clients) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The key a client is counted under: its IPv4 address, or its IPv6 /64.
fn count_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u64::MAX as u128))),
        v4 => v4,
    }
}

/// The caps of one listener.
#[derive(Clone, Debug, Default)]
pub struct ConnCaps {
    /// Open connections per client address (0: no cap).
    pub per_ip: u32,
    /// Open connections in all (0: no cap).
    pub total: usize,
    /// Count loopback clients as well (they are exempt by default).
    pub cap_loopback: bool,
    /// Peers whose connections are not capped per IP (their clients are, per request).
    pub trusted: TrustedProxies,
}

impl ConnCaps {
    /// No cap at all (tests, embedders).
    pub fn off() -> Self {
        ConnCaps::default()
    }
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The client already holds `per_ip` connections.
    PerIp,
    /// The listener already holds `total` connections.
    Total,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::PerIp => "per_ip",
            Refusal::Total => "total",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::PerIp => "too many connections from this address",
            Refusal::Total => "too many connections",
        })
    }
}

#[derive(Default)]
struct Counts {
    open: usize,
    per_ip: HashMap<IpAddr, u32>,
}

/// The open connections of one listener, in all and per client address.
pub struct ConnLimiter {
    listener: &'static str,
    caps: ConnCaps,
    counts: Mutex<Counts>,
    open_gauge: metrics::Gauge,
}

impl fmt::Debug for ConnLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnLimiter")
            .field("listener", &self.listener)
            .field("caps", &self.caps)
            .field("open", &self.open())
            .finish()
    }
}

impl ConnLimiter {
    /// The limiter of the listener named `listener` (the metrics' `listener` label).
    pub fn new(listener: &'static str, caps: ConnCaps) -> Arc<Self> {
        for reason in [Refusal::PerIp, Refusal::Total] {
            metrics::counter!("livehouse_conn_refused_total", "listener" => listener, "reason" => reason.as_str())
                .increment(0);
        }
        let open_gauge = metrics::gauge!("livehouse_conns_open", "listener" => listener);
        open_gauge.set(0.0);
        Arc::new(ConnLimiter {
            listener,
            caps,
            counts: Mutex::new(Counts::default()),
            open_gauge,
        })
    }

    pub fn listener(&self) -> &'static str {
        self.listener
    }

    pub fn caps(&self) -> &ConnCaps {
        &self.caps
    }

    /// Sets `livehouse_conns_open` again (it changes with every connection; call this
    /// periodically where idle gauges expire).
    pub fn export(&self) {
        let c = self.counts.lock();
        self.open_gauge.set(c.open as f64);
    }

    /// Connections open now (exempt ones included).
    pub fn open(&self) -> usize {
        self.counts.lock().open
    }

    /// Connections open now from `ip` (its /64 for IPv6) that count toward its cap.
    pub fn open_from(&self, ip: IpAddr) -> u32 {
        self.counts
            .lock()
            .per_ip
            .get(&count_key(ip))
            .copied()
            .unwrap_or(0)
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        !self.caps.cap_loopback && canonical(ip).is_loopback()
    }

    /// A connection from `peer` opens: counted in all and, unless exempt, for its address.
    /// Keep the guard as long as the connection lives.
    pub fn try_open(self: &Arc<Self>, peer: IpAddr) -> Result<ConnGuard, Refusal> {
        let exempt = self.exempt(peer);
        let key = (!exempt && self.caps.per_ip > 0 && !self.caps.trusted.contains(peer))
            .then(|| count_key(peer));
        let mut c = self.counts.lock();
        if !exempt && self.caps.total > 0 && c.open >= self.caps.total {
            drop(c);
            return Err(self.refuse(Refusal::Total, peer));
        }
        if let Some(k) = key {
            let n = c.per_ip.entry(k).or_insert(0);
            if *n >= self.caps.per_ip {
                drop(c);
                return Err(self.refuse(Refusal::PerIp, peer));
            }
            *n += 1;
        }
        c.open += 1;
        self.open_gauge.set(c.open as f64);
        Ok(ConnGuard {
            limiter: self.clone(),
            counted_open: true,
            key,
        })
    }

    /// A request a trusted proxy forwarded for `client` starts: counted for the client's address
    /// only (the proxy's connection is already counted in all). Keep the guard until the
    /// request (or the WebSocket it upgraded to) ends.
    pub fn try_forwarded(self: &Arc<Self>, client: IpAddr) -> Result<ConnGuard, Refusal> {
        let key =
            (!self.exempt(client) && self.caps.per_ip > 0 && !self.caps.trusted.contains(client))
                .then(|| count_key(client));
        if let Some(k) = key {
            let mut c = self.counts.lock();
            let n = c.per_ip.entry(k).or_insert(0);
            if *n >= self.caps.per_ip {
                drop(c);
                return Err(self.refuse(Refusal::PerIp, client));
            }
            *n += 1;
        }
        Ok(ConnGuard {
            limiter: self.clone(),
            counted_open: false,
            key,
        })
    }

    fn refuse(&self, why: Refusal, ip: IpAddr) -> Refusal {
        metrics::counter!("livehouse_conn_refused_total", "listener" => self.listener, "reason" => why.as_str())
            .increment(1);
        tracing::debug!(listener = self.listener, %ip, reason = why.as_str(), "connection refused");
        why
    }
}

/// One counted connection (or forwarded request); gives its slot back when dropped.
pub struct ConnGuard {
    limiter: Arc<ConnLimiter>,
    counted_open: bool,
    key: Option<IpAddr>,
}

impl fmt::Debug for ConnGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnGuard")
            .field("listener", &self.limiter.listener)
            .field("key", &self.key)
            .finish()
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut c = self.limiter.counts.lock();
        if self.counted_open {
            c.open = c.open.saturating_sub(1);
            self.limiter.open_gauge.set(c.open as f64);
        }
        if let Some(k) = self.key {
            if let Some(n) = c.per_ip.get_mut(&k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.per_ip.remove(&k);
                }
            }
        }
    }
}

/// A forwarded request's guard, in the request's extensions, for a handler whose work outlives
/// the response (a WebSocket upgrade) to take and keep; what is left is dropped with the
/// response.
#[derive(Clone, Default)]
pub struct HeldConn(Arc<Mutex<Option<ConnGuard>>>);

impl HeldConn {
    pub fn new(guard: ConnGuard) -> Self {
        HeldConn(Arc::new(Mutex::new(Some(guard))))
    }

    pub fn take(&self) -> Option<ConnGuard> {
        self.0.lock().take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn caps(per_ip: u32, total: usize) -> ConnCaps {
        ConnCaps {
            per_ip,
            total,
            cap_loopback: false,
            trusted: TrustedProxies::default(),
        }
    }

    #[test]
    fn the_per_ip_cap_refuses_the_next_connection_until_one_closes() {
        let l = ConnLimiter::new("test", caps(2, 0));
        let a = l.try_open(ip("192.0.2.1")).unwrap();
        let _b = l.try_open(ip("192.0.2.1")).unwrap();
        assert_eq!(l.try_open(ip("192.0.2.1")).unwrap_err(), Refusal::PerIp);
        let _other = l
            .try_open(ip("192.0.2.2"))
            .expect("another address has its own count");
        assert_eq!(l.open_from(ip("192.0.2.1")), 2);
        drop(a);
        let _c = l
            .try_open(ip("192.0.2.1"))
            .expect("a closed connection frees its slot");
        assert_eq!(l.open(), 3);
    }

    #[test]
    fn the_total_cap_refuses_any_address_and_guards_give_slots_back() {
        let l = ConnLimiter::new("test", caps(0, 3));
        let guards: Vec<_> = (1..=3)
            .map(|i| l.try_open(ip(&format!("198.51.100.{i}"))).unwrap())
            .collect();
        assert_eq!(l.try_open(ip("203.0.113.9")).unwrap_err(), Refusal::Total);
        drop(guards);
        assert_eq!(l.open(), 0);
        assert!(l.counts.lock().per_ip.is_empty(), "no entry is left behind");
        l.try_open(ip("203.0.113.9")).unwrap();
    }

    #[test]
    fn loopback_is_exempt_unless_capped_and_zero_turns_caps_off() {
        let l = ConnLimiter::new("test", caps(1, 1));
        let held: Vec<_> = (0..5)
            .map(|_| l.try_open(ip("127.0.0.1")).unwrap())
            .collect();
        let held6 = l.try_open(ip("::1")).unwrap();
        let mapped = l.try_open(ip("::ffff:127.0.0.1")).unwrap();
        assert_eq!(l.open(), 7, "exempt connections still count in all");
        assert_eq!(l.try_open(ip("192.0.2.1")).unwrap_err(), Refusal::Total);
        drop((held, held6, mapped));

        let capped = ConnLimiter::new(
            "test",
            ConnCaps {
                cap_loopback: true,
                ..caps(1, 0)
            },
        );
        let _a = capped.try_open(ip("127.0.0.1")).unwrap();
        assert_eq!(
            capped.try_open(ip("127.0.0.1")).unwrap_err(),
            Refusal::PerIp
        );

        let off = ConnLimiter::new("test", caps(0, 0));
        let many: Vec<_> = (0..1000)
            .map(|_| off.try_open(ip("192.0.2.1")).unwrap())
            .collect();
        assert_eq!(off.open(), 1000);
        drop(many);
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let l = ConnLimiter::new("test", caps(2, 0));
        let _a = l.try_open(ip("2001:db8:1:2::1")).unwrap();
        let _b = l.try_open(ip("2001:db8:1:2:ffff::9")).unwrap();
        assert_eq!(
            l.try_open(ip("2001:db8:1:2:abcd::1")).unwrap_err(),
            Refusal::PerIp,
            "the same /64"
        );
        l.try_open(ip("2001:db8:1:3::1"))
            .expect("another /64 has its own count");
    }

    #[test]
    fn a_trusted_proxy_is_capped_in_all_only_and_its_clients_per_request() {
        let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let l = ConnLimiter::new(
            "test",
            ConnCaps {
                trusted,
                ..caps(1, 3)
            },
        );
        let proxy: Vec<_> = (0..3)
            .map(|_| l.try_open(ip("10.1.2.3")).unwrap())
            .collect();
        assert_eq!(l.try_open(ip("10.1.2.3")).unwrap_err(), Refusal::Total);
        let r1 = l.try_forwarded(ip("192.0.2.7")).unwrap();
        assert_eq!(
            l.try_forwarded(ip("192.0.2.7")).unwrap_err(),
            Refusal::PerIp
        );
        assert_eq!(l.open(), 3, "forwarded requests do not count in all");
        drop(r1);
        let _r2 = l.try_forwarded(ip("192.0.2.7")).unwrap();
        drop(proxy);
    }

    #[test]
    fn a_held_guard_moves_out_once() {
        let l = ConnLimiter::new("test", caps(1, 0));
        let held = HeldConn::new(l.try_forwarded(ip("192.0.2.1")).unwrap());
        let guard = held.clone().take().expect("the first take gets it");
        assert!(held.take().is_none());
        assert_eq!(l.open_from(ip("192.0.2.1")), 1);
        drop(guard);
        assert_eq!(l.open_from(ip("192.0.2.1")), 0);
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let none = TrustedProxies::default();
        let proxy = TrustedProxies::new(vec!["10.0.0.1".parse().unwrap()]);
        let chain =
            TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()]);
        let xff = ["198.51.100.1, 192.0.2.7"];
        assert_eq!(client_ip(ip("10.0.0.1"), xff, &none), ip("10.0.0.1"));
        assert_eq!(client_ip(ip("203.0.113.5"), xff, &proxy), ip("203.0.113.5"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), xff, &proxy),
            ip("192.0.2.7"),
            "the address the proxy appended, not the one the client wrote"
        );
        assert_eq!(
            client_ip(
                ip("10.0.0.1"),
                ["198.51.100.1", "192.0.2.7, 10.9.9.9"],
                &chain
            ),
            ip("192.0.2.7"),
            "headers in order, trusted hops skipped"
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), ["10.2.2.2, 10.3.3.3"], &chain),
            ip("10.2.2.2"),
            "only proxies: the leftmost"
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), ["192.0.2.7, junk"], &proxy),
            ip("10.0.0.1"),
            "a bad entry stops the walk"
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), ["[2001:db8::1]:443"], &proxy),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), ["192.0.2.9:5555"], &proxy),
            ip("192.0.2.9")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), [], &proxy),
            ip("10.0.0.1"),
            "no header: the peer"
        );
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), xff, &proxy),
            ip("192.0.2.7"),
            "IPv4-mapped peers match IPv4 proxies"
        );
    }

    #[test]
    fn address_blocks_parse_and_match() {
        let net: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.255.0.1")) && !net.contains(ip("11.0.0.1")));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")) && !all.contains(ip("::2")));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert_eq!("::1".parse::<IpNet>().unwrap().to_string(), "::1/128");
        for bad in ["", "10.0.0.0/33", "example.com", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }
}
