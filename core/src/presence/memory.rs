//! In-process presence: the embedded twin of [`super::RedisPresence`], one mutex over plain maps.

use super::{ms, Beat, Conn, Presence, PresenceConfig, PresenceResult};
use crate::events::GatewayInfo;
use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};

/// The embedded presence store.
pub struct MemoryPresence {
    cfg: PresenceConfig,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// id → (info, last beat ms).
    gateways: HashMap<String, (GatewayInfo, i64)>,
    /// (gateway, conn) → connection.
    conns: HashMap<(String, u64), Conn>,
    /// user → their (gateway, conn) keys.
    by_user: HashMap<i64, Vec<(String, u64)>>,
    /// room → gateway → users there.
    rooms: HashMap<i64, HashMap<String, u64>>,
}

impl State {
    fn live(&self, gateway: &str, now: i64, window: i64) -> bool {
        self.gateways
            .get(gateway)
            .is_some_and(|(_, last)| *last > now - window)
    }

    fn remove_conn(&mut self, key: &(String, u64)) -> Option<Conn> {
        let c = self.conns.remove(key)?;
        if let Some(v) = self.by_user.get_mut(&c.user) {
            v.retain(|k| k != key);
            if v.is_empty() {
                self.by_user.remove(&c.user);
            }
        }
        Some(c)
    }

    fn insert_conn(&mut self, c: Conn) {
        let key = (c.gateway.clone(), c.conn);
        self.by_user.entry(c.user).or_default().push(key.clone());
        self.conns.insert(key, c);
    }

    /// Removes everything `gateway` wrote; returns the rooms it had counts in.
    fn drop_gateway(&mut self, gateway: &str) -> Vec<i64> {
        self.gateways.remove(gateway);
        let keys: Vec<(String, u64)> = self
            .conns
            .keys()
            .filter(|(g, _)| g == gateway)
            .cloned()
            .collect();
        for k in keys {
            self.remove_conn(&k);
        }
        let mut rooms = Vec::new();
        self.rooms.retain(|room, gws| {
            if gws.remove(gateway).is_some() {
                rooms.push(*room);
            }
            !gws.is_empty()
        });
        rooms.sort_unstable();
        rooms
    }
}

impl MemoryPresence {
    pub fn new(cfg: PresenceConfig) -> Self {
        MemoryPresence {
            cfg,
            state: Mutex::new(State::default()),
        }
    }

    fn window(&self) -> i64 {
        ms(self.cfg.live_window)
    }
}

impl Default for MemoryPresence {
    fn default() -> Self {
        Self::new(PresenceConfig::default())
    }
}

#[async_trait]
impl Presence for MemoryPresence {
    fn config(&self) -> &PresenceConfig {
        &self.cfg
    }

    async fn beat(
        &self,
        info: &GatewayInfo,
        room_counts: &[(i64, u64)],
        now_ms: i64,
    ) -> PresenceResult<Beat> {
        let mut s = self.state.lock();
        let known = s
            .gateways
            .insert(info.id.clone(), (info.clone(), now_ms))
            .is_some();
        for &(room, n) in room_counts {
            let gws = s.rooms.entry(room).or_default();
            if n > 0 {
                gws.insert(info.id.clone(), n);
            } else {
                gws.remove(&info.id);
                if gws.is_empty() {
                    s.rooms.remove(&room);
                }
            }
        }
        Ok(Beat { known })
    }

    async fn remove_gateway(&self, gateway: &str) -> PresenceResult<()> {
        self.state.lock().drop_gateway(gateway);
        Ok(())
    }

    async fn gateways(&self, now_ms: i64) -> PresenceResult<Vec<GatewayInfo>> {
        let s = self.state.lock();
        let w = self.window();
        let mut v: Vec<GatewayInfo> = s
            .gateways
            .values()
            .filter(|(_, last)| *last > now_ms - w)
            .map(|(info, _)| info.clone())
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v)
    }

    async fn join(&self, c: &Conn, max_per_user: usize, now_ms: i64) -> PresenceResult<Vec<Conn>> {
        let mut s = self.state.lock();
        let w = self.window();
        let keys = s.by_user.get(&c.user).cloned().unwrap_or_default();
        let mut displaced = Vec::new();
        let mut kept = Vec::new();
        for k in keys {
            let live = s.live(&k.0, now_ms, w);
            let other = s.conns.get(&k).cloned().expect("indexed");
            if !live {
                s.remove_conn(&k);
            } else if other.same_slot(c) {
                s.remove_conn(&k);
                displaced.push(other);
            } else {
                kept.push(other);
            }
        }
        s.insert_conn(c.clone());
        while kept.len() + 1 > max_per_user.max(1) {
            let i = (0..kept.len())
                .min_by_key(|&i| kept[i].at_ms)
                .expect("not empty");
            let old = kept.swap_remove(i);
            s.remove_conn(&(old.gateway.clone(), old.conn));
            displaced.push(old);
        }
        Ok(displaced)
    }

    async fn leave(&self, c: &Conn) -> PresenceResult<()> {
        self.state.lock().remove_conn(&(c.gateway.clone(), c.conn));
        Ok(())
    }

    async fn user_conns(&self, user: i64, now_ms: i64) -> PresenceResult<Vec<Conn>> {
        let s = self.state.lock();
        let w = self.window();
        let mut v: Vec<Conn> = s
            .by_user
            .get(&user)
            .into_iter()
            .flatten()
            .filter(|k| s.live(&k.0, now_ms, w))
            .filter_map(|k| s.conns.get(k).cloned())
            .collect();
        v.sort_by_key(|c| (c.at_ms, c.gateway.clone(), c.conn));
        Ok(v)
    }

    async fn room_gateways(&self, room: i64, now_ms: i64) -> PresenceResult<Vec<(String, u64)>> {
        let s = self.state.lock();
        let w = self.window();
        let mut v: Vec<(String, u64)> = s
            .rooms
            .get(&room)
            .into_iter()
            .flatten()
            .filter(|(g, n)| **n > 0 && s.live(g, now_ms, w))
            .map(|(g, n)| (g.clone(), *n))
            .collect();
        v.sort();
        Ok(v)
    }

    async fn room_counts(&self, rooms: &[i64], now_ms: i64) -> PresenceResult<Vec<u64>> {
        let s = self.state.lock();
        let w = self.window();
        Ok(rooms
            .iter()
            .map(|room| {
                s.rooms
                    .get(room)
                    .into_iter()
                    .flatten()
                    .filter(|(g, _)| s.live(g, now_ms, w))
                    .map(|(_, n)| *n)
                    .sum()
            })
            .collect())
    }

    async fn restore(
        &self,
        gateway: &str,
        conns: &[Conn],
        room_counts: &[(i64, u64)],
    ) -> PresenceResult<()> {
        let mut s = self.state.lock();
        for c in conns.iter().filter(|c| c.gateway == gateway) {
            let key = (c.gateway.clone(), c.conn);
            if !s.conns.contains_key(&key) {
                s.insert_conn(c.clone());
            }
        }
        let have: HashSet<i64> = room_counts.iter().map(|(r, _)| *r).collect();
        s.rooms.retain(|room, gws| {
            if !have.contains(room) {
                gws.remove(gateway);
            }
            !gws.is_empty()
        });
        for &(room, n) in room_counts.iter().filter(|(_, n)| *n > 0) {
            s.rooms
                .entry(room)
                .or_default()
                .insert(gateway.to_string(), n);
        }
        Ok(())
    }

    async fn sweep(&self, now_ms: i64) -> PresenceResult<Vec<i64>> {
        let mut s = self.state.lock();
        let w = self.window();
        let dead: Vec<String> = s
            .gateways
            .iter()
            .filter(|(_, (_, last))| *last <= now_ms - 2 * w)
            .map(|(id, _)| id.clone())
            .collect();
        let mut rooms = Vec::new();
        for g in dead {
            rooms.extend(s.drop_gateway(&g));
        }
        rooms.sort_unstable();
        rooms.dedup();
        Ok(rooms)
    }
}
