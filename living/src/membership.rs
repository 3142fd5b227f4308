//! Room membership: consumes the online/offline events (group `living`) into each room's member
//! set in the cache ([`keys::room_members`], expiring [`MembershipConfig::member_ttl`] after the
//! last join) and reports the room's new member count through a callback after every change (the
//! caller keeps `watch_num` from it).
//!
//! A user may hold several sessions in one room (a reconnect on another gateway arrives before
//! the old session's offline event), and online and offline events travel on different topics,
//! so they can arrive out of order. So this instance keeps the sessions it has seen per (room,
//! user) — gateway and `at_ms` — and removes the member only when the last one ends; an offline
//! event that arrives before its online event leaves a short-lived tombstone that cancels it.
//!
//! A gateway that dies sends no offline events: a sweep every [`MembershipConfig::sweep_every`]
//! removes the members of the rooms this instance knows whose user → gateway binding is gone
//! (it expires after two heartbeat gaps) or names a gateway that is not live: its registration
//! in [`keys::GATEWAYS`] is older than [`MembershipConfig::gateway_stale`] or gone. So a killed
//! gateway's users leave their rooms within `gateway_stale + sweep_every`.
//!
//! Must not: touch SQL (the callback does), read anything per chat message, or keep more than
//! the sessions of online users.

use livehouse_core::bus::{Bus, Subscription, TOPIC_OFFLINE, TOPIC_ONLINE};
use livehouse_core::cache::Cache;
use livehouse_core::events::{keys, PresenceEvent};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Consumer group of the presence topics: the `living` instances share the rooms.
pub const GROUP: &str = "living";
/// Keys per `get_many` call in a sweep.
const SWEEP_CHUNK: usize = 1000;
/// How long an offline event seen before its online event is remembered.
const TOMBSTONE_TTL: Duration = Duration::from_secs(120);
/// Pause after a bus or cache error before going on.
const RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// Called with `(room_id, member_count)` after the room's member set changed.
pub type OnCount = Arc<dyn Fn(i64, i64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Tuning; [`Default`] matches a 30 s heartbeat.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// Expiry of a room's member set, renewed by every join.
    pub member_ttl: Duration,
    /// How often the members of known rooms are checked against bindings and gateways.
    pub sweep_every: Duration,
    /// A gateway is live while its last registration (its score in [`keys::GATEWAYS`]) is
    /// younger than this; the members bound to any other gateway are removed. Must exceed the
    /// gateways' registration interval; one heartbeat gap is a good value.
    pub gateway_stale: Duration,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig {
            member_ttl: Duration::from_secs(12 * 3600),
            sweep_every: Duration::from_secs(5),
            gateway_stale: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Online,
    Offline,
}

/// (room id, user id).
type RoomUser = (i64, i64);
/// A room and its members, each with its binding (the gateway id), as a sweep reads them.
type RoomBindings = (i64, Vec<(String, Option<String>)>);
/// An offline event not matched by a session yet: gateway, `at_ms`, when it was seen.
type Tombstone = (String, i64, Instant);

/// Sessions seen per (room, user), and offline events still waiting for their online event.
#[derive(Default)]
struct Sessions {
    /// Open sessions: gateway and `at_ms` of their online event.
    open: HashMap<RoomUser, Vec<(String, i64)>>,
    tombstones: HashMap<RoomUser, Vec<Tombstone>>,
    rooms: HashSet<i64>,
}

/// What applying an event asks of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Add,
    Remove,
    Nothing,
}

impl Sessions {
    fn apply(&mut self, kind: Kind, ev: &PresenceEvent, now: Instant) -> Change {
        let k = (ev.room_id, ev.user_id);
        self.rooms.insert(ev.room_id);
        match kind {
            Kind::Online => {
                if let Some(ts) = self.tombstones.get_mut(&k) {
                    if let Some(i) = ts
                        .iter()
                        .position(|(g, at, _)| *g == ev.gateway_id && *at >= ev.at_ms)
                    {
                        ts.remove(i);
                        if ts.is_empty() {
                            self.tombstones.remove(&k);
                        }
                        return Change::Nothing; // this session already ended
                    }
                }
                let open = self.open.entry(k).or_default();
                if !open
                    .iter()
                    .any(|(g, at)| *g == ev.gateway_id && *at == ev.at_ms)
                {
                    open.push((ev.gateway_id.clone(), ev.at_ms));
                }
                Change::Add
            }
            Kind::Offline => {
                let open = self.open.entry(k).or_default();
                // The latest session on that gateway that started before this event.
                let found = open
                    .iter()
                    .enumerate()
                    .filter(|(_, (g, at))| *g == ev.gateway_id && *at <= ev.at_ms)
                    .max_by_key(|(_, (_, at))| *at)
                    .map(|(i, _)| i);
                match found {
                    Some(i) => {
                        open.remove(i);
                    }
                    None => {
                        self.tombstones.entry(k).or_default().push((
                            ev.gateway_id.clone(),
                            ev.at_ms,
                            now,
                        ));
                    }
                }
                if open.is_empty() {
                    self.open.remove(&k);
                    Change::Remove
                } else {
                    Change::Nothing
                }
            }
        }
    }

    fn prune(&mut self, now: Instant) {
        for ts in self.tombstones.values_mut() {
            ts.retain(|(_, _, t)| *t + TOMBSTONE_TTL > now);
        }
        self.tombstones.retain(|_, ts| !ts.is_empty());
    }
}

/// A subscribed membership consumer; [`Membership::run`] serves until shutdown.
pub struct Membership {
    config: MembershipConfig,
    cache: Arc<dyn Cache>,
    on_count: OnCount,
    online: Box<dyn Subscription>,
    offline: Box<dyn Subscription>,
    sessions: Sessions,
}

/// Subscribes with [`MembershipConfig::default`] and serves until `shutdown` resolves.
pub async fn run(
    bus: Arc<dyn Bus>,
    cache: Arc<dyn Cache>,
    on_count: OnCount,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    Membership::subscribe(MembershipConfig::default(), bus, cache, on_count)
        .await?
        .run(shutdown)
        .await
}

impl Membership {
    /// Joins group [`GROUP`] on the online and offline topics.
    pub async fn subscribe(
        config: MembershipConfig,
        bus: Arc<dyn Bus>,
        cache: Arc<dyn Cache>,
        on_count: OnCount,
    ) -> anyhow::Result<Membership> {
        let online = bus.subscribe(TOPIC_ONLINE, GROUP).await?;
        let offline = bus.subscribe(TOPIC_OFFLINE, GROUP).await?;
        Ok(Membership {
            config,
            cache,
            on_count,
            online,
            offline,
            sessions: Sessions::default(),
        })
    }

    /// Serves until `shutdown` resolves. An event being handled then is not committed and comes
    /// again to the group.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let Membership {
            config,
            cache,
            on_count,
            mut online,
            mut offline,
            sessions,
        } = self;
        let mut state = State {
            config,
            cache,
            on_count,
            sessions,
        };
        tokio::pin!(shutdown);
        let every = state.config.sweep_every;
        let mut sweep = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (kind, r) = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = sweep.tick() => {
                    if let Err(e) = state.sweep().await {
                        tracing::warn!(error = %e, "living: membership sweep failed");
                    }
                    continue;
                }
                r = online.next() => (Kind::Online, r),
                r = offline.next() => (Kind::Offline, r),
            };
            let d = match r {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "living: presence subscription error");
                    tokio::time::sleep(RETRY_BACKOFF).await;
                    continue;
                }
            };
            let ev: Option<PresenceEvent> = match serde_json::from_slice(&d.payload) {
                Ok(ev) => Some(ev),
                Err(e) => {
                    tracing::warn!(error = %e, offset = d.offset, "living: unreadable presence event");
                    None
                }
            };
            if let Some(ev) = ev {
                // Applied to the local sessions once; a retry after a cache error repeats the I/O.
                let change = state.sessions.apply(kind, &ev, Instant::now());
                // The cache may be down: keep the event (order per room) until it is written.
                while let Err(e) = state.write(change, &ev).await {
                    tracing::warn!(error = %e, "living: presence event not written; retrying");
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
            }
            let sub = match kind {
                Kind::Online => &mut online,
                Kind::Offline => &mut offline,
            };
            if let Err(e) = sub.commit(&d).await {
                tracing::warn!(error = %e, "living: commit failed (will be redelivered)");
            }
        }
    }
}

/// What the consumer loop works with, apart from its subscriptions.
struct State {
    config: MembershipConfig,
    cache: Arc<dyn Cache>,
    on_count: OnCount,
    sessions: Sessions,
}

impl State {
    async fn write(&self, change: Change, ev: &PresenceEvent) -> anyhow::Result<()> {
        let key = keys::room_members(ev.room_id);
        let member = [ev.user_id.to_string()];
        match change {
            Change::Add => {
                self.cache.set_add(&key, &member).await?;
                self.cache.expire(&key, self.config.member_ttl).await?;
            }
            Change::Remove => {
                self.cache.set_remove(&key, &member).await?;
            }
            Change::Nothing => return Ok(()),
        }
        let n = self.cache.set_card(&key).await?;
        (self.on_count)(ev.room_id, n as i64).await;
        Ok(())
    }

    /// Removes the members whose binding is gone or names a gateway that is not live.
    async fn sweep(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        self.sessions.prune(now);
        // Each known room's members and their bindings.
        let rooms: Vec<i64> = self.sessions.rooms.iter().copied().collect();
        let mut found: Vec<RoomBindings> = Vec::with_capacity(rooms.len());
        for room in rooms {
            let members = self.cache.set_members(&keys::room_members(room)).await?;
            let mut with_bindings = Vec::with_capacity(members.len());
            for chunk in members.chunks(SWEEP_CHUNK) {
                // A member that is not a user id gets no binding, and so is removed.
                let bkeys: Vec<String> = chunk
                    .iter()
                    .map(|u| keys::user_gateway(u.parse().unwrap_or(i64::MIN)))
                    .collect();
                let bindings = self.cache.get_many(&bkeys).await?;
                with_bindings.extend(chunk.iter().cloned().zip(bindings));
            }
            found.push((room, with_bindings));
        }
        let live = self.live_gateways(&found).await?;
        // Sessions on dead gateways are over; a member left with none is gone.
        let mut ended: HashSet<RoomUser> = HashSet::new();
        self.sessions.open.retain(|k, v| {
            v.retain(|(g, _)| live.contains(g));
            if v.is_empty() {
                ended.insert(*k);
            }
            !v.is_empty()
        });
        for (room, members) in found {
            let gone: Vec<String> = members
                .iter()
                .filter(|(u, b)| {
                    let uid: i64 = u.parse().unwrap_or_default();
                    !b.as_ref().is_some_and(|g| live.contains(g)) || ended.contains(&(room, uid))
                })
                .map(|(u, _)| u.clone())
                .collect();
            if !gone.is_empty() {
                for u in &gone {
                    if let Ok(uid) = u.parse::<i64>() {
                        self.sessions.open.remove(&(room, uid));
                    }
                }
                let key = keys::room_members(room);
                self.cache.set_remove(&key, &gone).await?;
                let n = self.cache.set_card(&key).await?;
                tracing::info!(
                    room,
                    removed = gone.len(),
                    "living: swept members of dead sessions"
                );
                (self.on_count)(room, n as i64).await;
            }
            if members.len() == gone.len() {
                self.sessions.rooms.remove(&room);
            }
        }
        Ok(())
    }

    /// The gateways (among those named by `found`'s bindings and the open sessions) that are
    /// live: registered within `gateway_stale`, or whose registration record has not expired yet
    /// (so a `gateway_stale` shorter than the registration interval never kills a live gateway).
    async fn live_gateways(&self, found: &[RoomBindings]) -> anyhow::Result<HashSet<String>> {
        let live_from =
            livehouse_core::time::now_ms() - self.config.gateway_stale.as_millis() as i64;
        let mut live: HashSet<String> = self
            .cache
            .zrange_by_score(keys::GATEWAYS, live_from as f64, f64::INFINITY)
            .await?
            .into_iter()
            .map(|(g, _)| g)
            .collect();
        let mut others: Vec<String> = found
            .iter()
            .flat_map(|(_, m)| m.iter().filter_map(|(_, b)| b.clone()))
            .chain(
                self.sessions
                    .open
                    .values()
                    .flat_map(|v| v.iter().map(|(g, _)| g.clone())),
            )
            .filter(|g| !live.contains(g))
            .collect();
        others.sort_unstable();
        others.dedup();
        for chunk in others.chunks(SWEEP_CHUNK) {
            let info_keys: Vec<String> = chunk.iter().map(|g| keys::gateway_info(g)).collect();
            let infos = self.cache.get_many(&info_keys).await?;
            live.extend(
                chunk
                    .iter()
                    .zip(infos)
                    .filter(|(_, i)| i.is_some())
                    .map(|(g, _)| g.clone()),
            );
        }
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livehouse_core::bus::MemoryBus;
    use livehouse_core::cache::MemoryCache;
    use std::sync::Mutex;

    const ROOM: i64 = 9;

    struct Fixture {
        bus: Arc<dyn Bus>,
        cache: Arc<MemoryCache>,
        counts: Arc<Mutex<Vec<(i64, i64)>>>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<anyhow::Result<()>>,
    }

    async fn start(config: MembershipConfig) -> Fixture {
        start_on(Arc::new(MemoryBus::new()), config).await
    }

    async fn start_on(bus: Arc<dyn Bus>, config: MembershipConfig) -> Fixture {
        let cache = Arc::new(MemoryCache::new());
        let counts = Arc::new(Mutex::new(Vec::new()));
        let c2 = counts.clone();
        let on_count: OnCount = Arc::new(move |room, n| {
            let c = c2.clone();
            Box::pin(async move { c.lock().unwrap().push((room, n)) })
        });
        let m = Membership::subscribe(config, bus.clone(), cache.clone(), on_count)
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(m.run(async move {
            let _ = rx.await;
        }));
        Fixture {
            bus,
            cache,
            counts,
            stop: Some(tx),
            task,
        }
    }

    impl Fixture {
        async fn event(&self, topic: &str, user: i64, gateway: &str, at_ms: i64) {
            let ev = PresenceEvent {
                user_id: user,
                room_id: ROOM,
                gateway_id: gateway.into(),
                at_ms,
            };
            let payload = serde_json::to_vec(&ev).unwrap();
            self.bus
                .publish(topic, &ROOM.to_string(), payload.into())
                .await
                .unwrap();
        }

        async fn members(&self) -> Vec<String> {
            let mut v = self
                .cache
                .set_members(&keys::room_members(ROOM))
                .await
                .unwrap();
            v.sort();
            v
        }

        /// Waits (bounded) until the member set is `want` and the last count reported matches.
        async fn expect(&self, want: &[&str]) {
            let end = Instant::now() + Duration::from_secs(30);
            loop {
                let got = self.members().await;
                let last = self.counts.lock().unwrap().last().copied();
                if got == want && last == Some((ROOM, want.len() as i64)) {
                    return;
                }
                assert!(
                    Instant::now() < end,
                    "members {got:?}, last count {last:?}, want {want:?}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }

        async fn stop(mut self) {
            let _ = self.stop.take().unwrap().send(());
            tokio::time::timeout(Duration::from_secs(5), self.task)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }

    fn quiet() -> MembershipConfig {
        MembershipConfig {
            sweep_every: Duration::from_secs(3600),
            ..MembershipConfig::default()
        }
    }

    #[tokio::test]
    async fn online_and_offline_keep_the_member_set_and_count() {
        let f = start(quiet()).await;
        f.event(TOPIC_ONLINE, 1, "a", 10).await;
        f.event(TOPIC_ONLINE, 2, "b", 11).await;
        f.expect(&["1", "2"]).await;
        f.event(TOPIC_OFFLINE, 1, "a", 20).await;
        f.expect(&["2"]).await;
        f.stop().await;
    }

    #[tokio::test]
    async fn a_reconnect_outlives_the_old_sessions_offline() {
        let f = start(quiet()).await;
        f.event(TOPIC_ONLINE, 1, "a", 10).await;
        f.event(TOPIC_ONLINE, 1, "b", 20).await; // reconnected on gateway b
        f.event(TOPIC_OFFLINE, 1, "a", 30).await; // gateway a notices the old session is gone
        f.event(TOPIC_ONLINE, 2, "a", 40).await; // a marker: everything before was applied
        f.expect(&["1", "2"]).await;
        f.event(TOPIC_OFFLINE, 1, "b", 50).await;
        f.expect(&["2"]).await;
        f.stop().await;
    }

    #[tokio::test]
    async fn an_offline_seen_before_its_online_wins() {
        let f = start(quiet()).await;
        f.event(TOPIC_OFFLINE, 1, "a", 20).await;
        // The count callback runs for the removal too: wait for it before the online.
        f.expect(&[]).await;
        f.event(TOPIC_ONLINE, 1, "a", 10).await;
        f.event(TOPIC_ONLINE, 2, "a", 30).await;
        f.expect(&["2"]).await;
        f.stop().await;
    }

    #[tokio::test]
    async fn the_member_set_expires() {
        let f = start(MembershipConfig {
            member_ttl: Duration::from_millis(200),
            ..quiet()
        })
        .await;
        f.event(TOPIC_ONLINE, 1, "a", 10).await;
        f.expect(&["1"]).await;
        let end = Instant::now() + Duration::from_secs(5);
        while !f.members().await.is_empty() {
            assert!(Instant::now() < end, "member set did not expire");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        f.stop().await;
    }

    #[tokio::test]
    async fn a_dead_gateways_users_are_swept() {
        let config = MembershipConfig {
            sweep_every: Duration::from_millis(50),
            gateway_stale: Duration::from_secs(30),
            ..MembershipConfig::default()
        };
        let f = start(config).await;
        let now = livehouse_core::time::now_ms() as f64;
        f.cache.zadd(keys::GATEWAYS, "a", now).await.unwrap();
        f.cache.zadd(keys::GATEWAYS, "b", now).await.unwrap();
        for (u, g) in [(1, "a"), (2, "b"), (3, "b")] {
            f.cache.set(&keys::user_gateway(u), g, None).await.unwrap();
            f.event(TOPIC_ONLINE, u, g, 10).await;
        }
        f.expect(&["1", "2", "3"]).await;
        // User 3's binding expired (their gateway missed their heartbeats).
        f.cache.del(&keys::user_gateway(3)).await.unwrap();
        f.expect(&["1", "2"]).await;
        // Gateway b stops its heartbeat: its score gets older than `gateway_stale`.
        f.cache
            .zadd(keys::GATEWAYS, "b", now - 60_000.0)
            .await
            .unwrap();
        f.expect(&["1"]).await;
        // A stale score with a live registration record (registering less often than
        // `gateway_stale`) is still live.
        f.cache
            .zadd(keys::GATEWAYS, "a", now - 60_000.0)
            .await
            .unwrap();
        f.cache
            .set(
                &keys::gateway_info("a"),
                "{}",
                Some(Duration::from_secs(60)),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await; // a few sweeps
        f.expect(&["1"]).await;
        f.cache.del(&keys::gateway_info("a")).await.unwrap();
        f.cache.zadd(keys::GATEWAYS, "a", now).await.unwrap();
        // Gateway a is trimmed from the registry (the api drops dead gateways when it picks one).
        f.cache.zrem(keys::GATEWAYS, "a").await.unwrap();
        f.expect(&[]).await;
        f.stop().await;
    }

    /// The same consumer on Kafka (`LIVEHOUSE_TEST_KAFKA_BROKERS`), in a namespace of its own.
    #[tokio::test]
    async fn membership_on_kafka() {
        let Some(brokers) = livehouse_core::testenv::backend("LIVEHOUSE_TEST_KAFKA_BROKERS") else {
            return;
        };
        let ns = format!("lhtest-living-{}", livehouse_core::ids::random_hex(6));
        let bus = livehouse_core::bus::KafkaBus::connect(&brokers, "living-test")
            .await
            .unwrap();
        let f = start_on(Arc::new(bus.with_namespace(&ns)), quiet()).await;
        f.event(TOPIC_ONLINE, 1, "a", 10).await;
        f.event(TOPIC_ONLINE, 2, "b", 11).await;
        f.expect(&["1", "2"]).await;
        f.event(TOPIC_OFFLINE, 1, "a", 20).await;
        f.expect(&["2"]).await;
        f.stop().await;
    }
}
