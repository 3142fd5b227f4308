//! In-process cache: the embedded twin of Redis for one-process deployments and tests.
//!
//! One mutex-guarded map; expired entries are invisible at once and swept every few thousand
//! writes, so memory stays bounded by live keys. No lock is held across an `.await`.

use super::{Cache, CacheError, CacheResult};
use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

enum Value {
    Str(String),
    List(Vec<String>),
    Set(HashSet<String>),
    ZSet(HashMap<String, f64>),
}

struct Entry {
    value: Value,
    expires_at: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

/// The embedded cache. Cheap to share behind an `Arc`.
#[derive(Default)]
pub struct MemoryCache {
    map: Mutex<HashMap<String, Entry>>,
    writes: AtomicU64,
}

const SWEEP_EVERY: u64 = 4096;

impl MemoryCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` on the live entry for `key` (expired ones removed first).
    fn with<R>(&self, key: &str, f: impl FnOnce(Option<&mut Entry>) -> R) -> R {
        let now = Instant::now();
        let mut map = self.map.lock();
        if map.get(key).is_some_and(|e| !e.live(now)) {
            map.remove(key);
        }
        f(map.get_mut(key))
    }

    /// Runs `f` on the entry for `key`, creating it with `init` when absent or expired.
    fn upsert<R>(
        &self,
        key: &str,
        init: impl FnOnce() -> Value,
        f: impl FnOnce(&mut Entry) -> CacheResult<R>,
    ) -> CacheResult<R> {
        self.maybe_sweep();
        let now = Instant::now();
        let mut map = self.map.lock();
        if map.get(key).is_some_and(|e| !e.live(now)) {
            map.remove(key);
        }
        let entry = map.entry(key.to_string()).or_insert_with(|| Entry {
            value: init(),
            expires_at: None,
        });
        let out = f(entry);
        // Drop collections left empty, as Redis does.
        let empty = match &entry.value {
            Value::List(l) => l.is_empty(),
            Value::Set(s) => s.is_empty(),
            Value::ZSet(z) => z.is_empty(),
            Value::Str(_) => false,
        };
        if empty {
            map.remove(key);
        }
        out
    }

    fn maybe_sweep(&self) {
        if self.writes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            let now = Instant::now();
            self.map.lock().retain(|_, e| e.live(now));
        }
    }
}

fn wrong(key: &str) -> CacheError {
    CacheError::WrongType(key.to_string())
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> CacheResult<Option<String>> {
        self.with(key, |e| match e.map(|e| &e.value) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(_) => Err(wrong(key)),
        })
    }

    async fn get_many(&self, keys: &[String]) -> CacheResult<Vec<Option<String>>> {
        let now = Instant::now();
        let map = self.map.lock();
        Ok(keys
            .iter()
            .map(|k| match map.get(k) {
                Some(e) if e.live(now) => match &e.value {
                    Value::Str(s) => Some(s.clone()),
                    _ => None,
                },
                _ => None,
            })
            .collect())
    }

    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> CacheResult<()> {
        self.maybe_sweep();
        let expires_at = ttl.map(|t| Instant::now() + t);
        self.map.lock().insert(
            key.to_string(),
            Entry {
                value: Value::Str(value.to_string()),
                expires_at,
            },
        );
        Ok(())
    }

    async fn set_if_newer(
        &self,
        key: &str,
        version: u64,
        value: &str,
        ttl: Option<Duration>,
    ) -> CacheResult<bool> {
        self.maybe_sweep();
        let now = Instant::now();
        let mut map = self.map.lock();
        if let Some(e) = map.get(key).filter(|e| e.live(now)) {
            let Value::Str(s) = &e.value else {
                return Err(wrong(key));
            };
            if super::split_versioned(s).is_some_and(|(v, _)| v >= version) {
                return Ok(false);
            }
        }
        map.insert(
            key.to_string(),
            Entry {
                value: Value::Str(format!("{version}:{value}")),
                expires_at: ttl.map(|t| now + t),
            },
        );
        Ok(true)
    }

    async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> CacheResult<bool> {
        self.maybe_sweep();
        let now = Instant::now();
        let mut map = self.map.lock();
        if map.get(key).is_some_and(|e| e.live(now)) {
            return Ok(false);
        }
        map.insert(
            key.to_string(),
            Entry {
                value: Value::Str(value.to_string()),
                expires_at: Some(now + ttl),
            },
        );
        Ok(true)
    }

    async fn del(&self, key: &str) -> CacheResult<bool> {
        let now = Instant::now();
        Ok(self.map.lock().remove(key).is_some_and(|e| e.live(now)))
    }

    async fn del_if_eq(&self, key: &str, value: &str) -> CacheResult<bool> {
        let now = Instant::now();
        let mut map = self.map.lock();
        let matches = map
            .get(key)
            .is_some_and(|e| e.live(now) && matches!(&e.value, Value::Str(s) if s == value));
        if matches {
            map.remove(key);
        }
        Ok(matches)
    }

    async fn expire(&self, key: &str, ttl: Duration) -> CacheResult<bool> {
        self.with(key, |e| match e {
            Some(e) => {
                e.expires_at = Some(Instant::now() + ttl);
                Ok(true)
            }
            None => Ok(false),
        })
    }

    async fn incr_by(&self, key: &str, delta: i64) -> CacheResult<i64> {
        self.upsert(
            key,
            || Value::Str("0".into()),
            |e| match &mut e.value {
                Value::Str(s) => {
                    let n: i64 = s.parse().map_err(|_| wrong(key))?;
                    let n = n.checked_add(delta).ok_or_else(|| wrong(key))?;
                    *s = n.to_string();
                    Ok(n)
                }
                _ => Err(wrong(key)),
            },
        )
    }

    async fn incr_window(&self, key: &str, window: Duration) -> CacheResult<(i64, Duration)> {
        let now = Instant::now();
        self.upsert(
            key,
            || Value::Str("0".into()),
            |e| {
                let Value::Str(s) = &mut e.value else {
                    return Err(wrong(key));
                };
                let n: i64 = s.parse().map_err(|_| wrong(key))?;
                let n = n.checked_add(1).ok_or_else(|| wrong(key))?;
                *s = n.to_string();
                let expires_at = *e.expires_at.get_or_insert(now + window);
                Ok((n, expires_at.saturating_duration_since(now)))
            },
        )
    }

    async fn throttle(
        &self,
        key: &str,
        interval: Duration,
        burst: u32,
    ) -> CacheResult<Option<Duration>> {
        let now = crate::time::now_ms().max(0) as u64;
        let step = interval.as_millis().max(1) as u64;
        let slack = step * u64::from(burst.max(1) - 1);
        let at = Instant::now();
        self.upsert(
            key,
            || Value::Str(now.to_string()),
            |e| {
                let Value::Str(s) = &mut e.value else {
                    return Err(wrong(key));
                };
                let tat: u64 = s.parse::<u64>().map_err(|_| wrong(key))?.max(now);
                let allow_at = tat.saturating_sub(slack);
                if now < allow_at {
                    return Ok(Some(Duration::from_millis(allow_at - now)));
                }
                let new_tat = tat + step;
                *s = new_tat.to_string();
                e.expires_at = Some(at + Duration::from_millis(new_tat - now));
                Ok(None)
            },
        )
    }

    async fn list_replace(&self, key: &str, items: &[String]) -> CacheResult<()> {
        self.maybe_sweep();
        let mut map = self.map.lock();
        if items.is_empty() {
            map.remove(key);
        } else {
            map.insert(
                key.to_string(),
                Entry {
                    value: Value::List(items.to_vec()),
                    expires_at: None,
                },
            );
        }
        Ok(())
    }

    async fn list_range(&self, key: &str, start: usize, stop: usize) -> CacheResult<Vec<String>> {
        self.with(key, |e| match e.map(|e| &e.value) {
            None => Ok(vec![]),
            Some(Value::List(l)) => {
                if start >= l.len() || start > stop {
                    return Ok(vec![]);
                }
                let end = stop.min(l.len() - 1);
                Ok(l[start..=end].to_vec())
            }
            Some(_) => Err(wrong(key)),
        })
    }

    async fn list_len(&self, key: &str) -> CacheResult<usize> {
        self.with(key, |e| match e.map(|e| &e.value) {
            None => Ok(0),
            Some(Value::List(l)) => Ok(l.len()),
            Some(_) => Err(wrong(key)),
        })
    }

    async fn set_add(&self, key: &str, members: &[String]) -> CacheResult<usize> {
        if members.is_empty() {
            return Ok(0);
        }
        self.upsert(
            key,
            || Value::Set(HashSet::new()),
            |e| match &mut e.value {
                Value::Set(s) => Ok(members.iter().filter(|m| s.insert((*m).clone())).count()),
                _ => Err(wrong(key)),
            },
        )
    }

    async fn set_remove(&self, key: &str, members: &[String]) -> CacheResult<usize> {
        let present = self.with(key, |e| e.is_some());
        if !present {
            return Ok(0);
        }
        self.upsert(
            key,
            || Value::Set(HashSet::new()),
            |e| match &mut e.value {
                Value::Set(s) => Ok(members.iter().filter(|m| s.remove(*m)).count()),
                _ => Err(wrong(key)),
            },
        )
    }

    async fn set_members(&self, key: &str) -> CacheResult<Vec<String>> {
        self.with(key, |e| match e.map(|e| &e.value) {
            None => Ok(vec![]),
            Some(Value::Set(s)) => Ok(s.iter().cloned().collect()),
            Some(_) => Err(wrong(key)),
        })
    }

    async fn set_card(&self, key: &str) -> CacheResult<usize> {
        self.with(key, |e| match e.map(|e| &e.value) {
            None => Ok(0),
            Some(Value::Set(s)) => Ok(s.len()),
            Some(_) => Err(wrong(key)),
        })
    }

    async fn zadd(&self, key: &str, member: &str, score: f64) -> CacheResult<()> {
        self.upsert(
            key,
            || Value::ZSet(HashMap::new()),
            |e| match &mut e.value {
                Value::ZSet(z) => {
                    z.insert(member.to_string(), score);
                    Ok(())
                }
                _ => Err(wrong(key)),
            },
        )
    }

    async fn zscore(&self, key: &str, member: &str) -> CacheResult<Option<f64>> {
        self.with(key, |e| match e.map(|e| &e.value) {
            None => Ok(None),
            Some(Value::ZSet(z)) => Ok(z.get(member).copied()),
            Some(_) => Err(wrong(key)),
        })
    }

    async fn zrem(&self, key: &str, member: &str) -> CacheResult<bool> {
        if !self.with(key, |e| e.is_some()) {
            return Ok(false);
        }
        self.upsert(
            key,
            || Value::ZSet(HashMap::new()),
            |e| match &mut e.value {
                Value::ZSet(z) => Ok(z.remove(member).is_some()),
                _ => Err(wrong(key)),
            },
        )
    }

    async fn zrem_range_by_score(&self, key: &str, min: f64, max: f64) -> CacheResult<usize> {
        if !self.with(key, |e| e.is_some()) {
            return Ok(0);
        }
        self.upsert(
            key,
            || Value::ZSet(HashMap::new()),
            |e| match &mut e.value {
                Value::ZSet(z) => {
                    let before = z.len();
                    z.retain(|_, s| !(*s >= min && *s <= max));
                    Ok(before - z.len())
                }
                _ => Err(wrong(key)),
            },
        )
    }

    async fn zrange_by_score(
        &self,
        key: &str,
        min: f64,
        max: f64,
    ) -> CacheResult<Vec<(String, f64)>> {
        self.with(key, |e| match e.map(|e| &e.value) {
            None => Ok(vec![]),
            Some(Value::ZSet(z)) => {
                let mut v: Vec<(String, f64)> = z
                    .iter()
                    .filter(|(_, s)| **s >= min && **s <= max)
                    .map(|(m, s)| (m.clone(), *s))
                    .collect();
                v.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
                Ok(v)
            }
            Some(_) => Err(wrong(key)),
        })
    }
}
