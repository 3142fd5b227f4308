//! One conformance suite for every [`Cache`] adapter: the memory twin and Redis must agree on
//! every behaviour the services rely on. Run it from a test with a fresh cache (or a fresh
//! key prefix): `conformance::run_all(&cache).await`.

use super::Cache;
use std::time::{Duration, Instant};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Polls `cond` every 20 ms until it holds or `deadline` passes.
async fn eventually<F, Fut>(deadline: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs every check; panics with the name of the first behaviour that differs.
pub async fn run_all(c: &dyn Cache) {
    strings_and_ttl(c).await;
    set_nx_is_a_lock(c).await;
    incr(c).await;
    incr_window(c).await;
    throttle(c).await;
    versioned(c).await;
    lists(c).await;
    sets(c).await;
    sorted_sets(c).await;
    wrong_type(c).await;
}

async fn strings_and_ttl(c: &dyn Cache) {
    assert_eq!(
        c.get("str:a").await.unwrap(),
        None,
        "absent key reads as None"
    );
    c.set("str:a", "1", None).await.unwrap();
    c.set("str:b", "2", Some(Duration::from_millis(150)))
        .await
        .unwrap();
    assert_eq!(c.get("str:a").await.unwrap().as_deref(), Some("1"));
    assert_eq!(
        c.get_many(&s(&["str:a", "str:none", "str:b"]))
            .await
            .unwrap(),
        vec![Some("1".into()), None, Some("2".into())],
        "get_many keeps order and reports gaps"
    );
    assert!(
        eventually(Duration::from_secs(3), || async {
            c.get("str:b").await.unwrap().is_none()
        })
        .await,
        "a key with a TTL expires"
    );
    assert!(c.expire("str:a", Duration::from_millis(100)).await.unwrap());
    assert!(
        !c.expire("str:none", Duration::from_millis(100))
            .await
            .unwrap(),
        "expire on absent"
    );
    assert!(
        eventually(Duration::from_secs(3), || async {
            c.get("str:a").await.unwrap().is_none()
        })
        .await,
        "expire() applies a TTL"
    );
    c.set("str:c", "x", None).await.unwrap();
    assert!(c.del("str:c").await.unwrap());
    assert!(
        !c.del("str:c").await.unwrap(),
        "second delete reports absence"
    );
    assert_eq!(c.get_many(&[]).await.unwrap(), Vec::<Option<String>>::new());
}

async fn set_nx_is_a_lock(c: &dyn Cache) {
    let ttl = Duration::from_millis(200);
    assert!(
        c.set_nx("lock:a", "owner1", ttl).await.unwrap(),
        "first taker wins"
    );
    assert!(
        !c.set_nx("lock:a", "owner2", ttl).await.unwrap(),
        "second taker loses"
    );
    assert!(
        !c.del_if_eq("lock:a", "owner2").await.unwrap(),
        "non-owner cannot release"
    );
    assert!(
        c.del_if_eq("lock:a", "owner1").await.unwrap(),
        "owner releases"
    );
    assert!(
        c.set_nx("lock:a", "owner2", ttl).await.unwrap(),
        "released lock is free"
    );
    assert!(
        eventually(Duration::from_secs(3), || async {
            c.set_nx("lock:a", "owner3", ttl).await.unwrap()
        })
        .await,
        "an abandoned lock expires"
    );
}

async fn incr(c: &dyn Cache) {
    assert_eq!(c.incr_by("n:a", 5).await.unwrap(), 5);
    assert_eq!(c.incr_by("n:a", -2).await.unwrap(), 3);
    assert_eq!(c.get("n:a").await.unwrap().as_deref(), Some("3"));
}

async fn incr_window(c: &dyn Cache) {
    let w = Duration::from_millis(400);
    let (n, left) = c.incr_window("win:a", w).await.unwrap();
    assert_eq!(n, 1, "incr_window: the first call opens the window");
    assert!(
        left > Duration::ZERO && left <= w,
        "incr_window: time left {left:?} within the window"
    );
    let (n, left2) = c.incr_window("win:a", w).await.unwrap();
    assert_eq!(n, 2, "incr_window: counts within the window");
    assert!(left2 <= left, "incr_window: the window is not extended");
    assert_eq!(
        c.incr_window("win:b", w).await.unwrap().0,
        1,
        "incr_window: per key"
    );
    // After the window the count starts again.
    assert!(
        eventually(Duration::from_secs(5), || async {
            c.get("win:a").await.unwrap().is_none()
        })
        .await,
        "incr_window: the window expires"
    );
    assert_eq!(
        c.incr_window("win:a", w).await.unwrap().0,
        1,
        "incr_window: a new window after expiry"
    );
    // A counter without a time to live gets the window's.
    c.set("win:c", "7", None).await.unwrap();
    let (n, left) = c.incr_window("win:c", w).await.unwrap();
    assert_eq!(n, 8, "incr_window: adds to an existing count");
    assert!(left <= w, "incr_window: a key without TTL gets the window");
    c.set("win:d", "x", None).await.unwrap();
    assert!(
        c.incr_window("win:d", w).await.is_err(),
        "incr_window: a non-integer is an error"
    );
}

async fn throttle(c: &dyn Cache) {
    let step = Duration::from_millis(300);
    // A burst of 3, then refused with the time until the next token.
    for i in 0..3 {
        assert_eq!(
            c.throttle("thr:a", step, 3).await.unwrap(),
            None,
            "throttle: token {i} of the burst"
        );
    }
    let wait = c.throttle("thr:a", step, 3).await.unwrap();
    assert!(
        wait.is_some_and(|w| w > Duration::ZERO && w <= step),
        "throttle: the 4th waits at most one interval: {wait:?}"
    );
    // A refusal takes nothing: once the wait is over, exactly one more passes.
    tokio::time::sleep(wait.unwrap() + Duration::from_millis(20)).await;
    assert_eq!(
        c.throttle("thr:a", step, 3).await.unwrap(),
        None,
        "throttle: refilled"
    );
    assert!(
        c.throttle("thr:a", step, 3).await.unwrap().is_some(),
        "throttle: only one token came back"
    );
    // Burst 1 is slow mode: one per interval, the wait is the rest of the interval.
    let slow = Duration::from_secs(10);
    assert_eq!(c.throttle("thr:slow", slow, 1).await.unwrap(), None);
    let wait = c.throttle("thr:slow", slow, 1).await.unwrap();
    assert!(
        wait.is_some_and(|w| w > Duration::from_secs(9) && w <= slow),
        "throttle: slow mode waits the rest of the interval: {wait:?}"
    );
    assert_eq!(
        c.throttle("thr:other", slow, 1).await.unwrap(),
        None,
        "throttle: per key"
    );
    // The key goes away once the bucket is full again.
    assert!(
        eventually(Duration::from_secs(5), || async {
            c.get("thr:a").await.unwrap().is_none()
        })
        .await,
        "throttle: a full bucket leaves no key"
    );
}

async fn versioned(c: &dyn Cache) {
    use super::split_versioned;
    assert!(
        c.set_if_newer("ver:a", 5, "five", None).await.unwrap(),
        "absent key"
    );
    assert_eq!(c.get("ver:a").await.unwrap().as_deref(), Some("5:five"));
    assert!(
        !c.set_if_newer("ver:a", 4, "four", None).await.unwrap(),
        "an older version loses"
    );
    assert!(
        !c.set_if_newer("ver:a", 5, "again", None).await.unwrap(),
        "the same version loses"
    );
    assert!(c
        .set_if_newer("ver:a", 12, "twelve:with:colons", None)
        .await
        .unwrap());
    let stored = c.get("ver:a").await.unwrap().unwrap();
    assert_eq!(split_versioned(&stored), Some((12, "twelve:with:colons")));
    assert!(
        !c.set_if_newer("ver:a", 9, "nine", None).await.unwrap(),
        "versions compare as numbers, not text"
    );
    c.set("ver:b", "no version", None).await.unwrap();
    assert!(
        c.set_if_newer("ver:b", 1, "one", None).await.unwrap(),
        "a value without a version counts as version 0"
    );
    assert!(c
        .set_if_newer("ver:c", 1, "short", Some(Duration::from_millis(100)))
        .await
        .unwrap());
    assert!(
        eventually(Duration::from_secs(3), || async {
            c.get("ver:c").await.unwrap().is_none()
        })
        .await,
        "set_if_newer honours its TTL"
    );
    assert!(
        c.set_if_newer("ver:c", 1, "back", None).await.unwrap(),
        "an expired key is absent"
    );
    c.set_add("ver:set", &s(&["1"])).await.unwrap();
    assert!(
        c.set_if_newer("ver:set", 1, "x", None).await.is_err(),
        "a key of another type is an error"
    );
    // Racing writers: whatever the order, the highest version stays.
    let writes = (1..=20u64).rev().map(|v| async move {
        c.set_if_newer("ver:race", v, &format!("v{v}"), None)
            .await
            .unwrap()
    });
    futures::future::join_all(writes).await;
    assert_eq!(c.get("ver:race").await.unwrap().as_deref(), Some("20:v20"));
}

async fn lists(c: &dyn Cache) {
    assert_eq!(c.list_len("list:a").await.unwrap(), 0);
    assert!(c.list_range("list:a", 0, 10).await.unwrap().is_empty());
    let items: Vec<String> = (0..1200).map(|i| format!("item{i}")).collect();
    c.list_replace("list:a", &items).await.unwrap();
    assert_eq!(
        c.list_len("list:a").await.unwrap(),
        1200,
        "large lists are written whole"
    );
    assert_eq!(
        c.list_range("list:a", 0, 1).await.unwrap(),
        s(&["item0", "item1"])
    );
    assert_eq!(
        c.list_range("list:a", 1198, 5000).await.unwrap(),
        s(&["item1198", "item1199"])
    );
    assert!(
        c.list_range("list:a", 1200, 1300).await.unwrap().is_empty(),
        "past the end"
    );
    assert!(
        c.list_range("list:a", 5, 4).await.unwrap().is_empty(),
        "start > stop"
    );
    c.list_replace("list:a", &s(&["x"])).await.unwrap();
    assert_eq!(
        c.list_range("list:a", 0, 100).await.unwrap(),
        s(&["x"]),
        "replace, not append"
    );
    c.list_replace("list:a", &[]).await.unwrap();
    assert_eq!(
        c.list_len("list:a").await.unwrap(),
        0,
        "empty replace clears"
    );
}

async fn sets(c: &dyn Cache) {
    assert_eq!(c.set_add("set:a", &s(&["1", "2", "2"])).await.unwrap(), 2);
    assert_eq!(c.set_add("set:a", &s(&["2", "3"])).await.unwrap(), 1);
    let mut m = c.set_members("set:a").await.unwrap();
    m.sort();
    assert_eq!(m, s(&["1", "2", "3"]));
    assert_eq!(c.set_card("set:a").await.unwrap(), 3);
    assert_eq!(c.set_remove("set:a", &s(&["1", "9"])).await.unwrap(), 1);
    assert_eq!(c.set_remove("set:none", &s(&["1"])).await.unwrap(), 0);
    assert!(c.expire("set:a", Duration::from_millis(100)).await.unwrap());
    assert!(
        eventually(Duration::from_secs(3), || async {
            c.set_card("set:a").await.unwrap() == 0
        })
        .await,
        "sets expire too"
    );
    assert_eq!(c.set_add("set:b", &s(&["1"])).await.unwrap(), 1);
    assert_eq!(c.set_remove("set:b", &s(&["1"])).await.unwrap(), 1);
    assert!(
        !c.del("set:b").await.unwrap(),
        "an emptied set no longer exists"
    );
}

async fn sorted_sets(c: &dyn Cache) {
    c.zadd("z:a", "u1", 10.0).await.unwrap();
    c.zadd("z:a", "u2", 20.0).await.unwrap();
    c.zadd("z:a", "u3", 30.0).await.unwrap();
    c.zadd("z:a", "u1", 40.0).await.unwrap();
    assert_eq!(
        c.zscore("z:a", "u1").await.unwrap(),
        Some(40.0),
        "zadd updates the score"
    );
    assert_eq!(c.zscore("z:a", "nobody").await.unwrap(), None);
    assert_eq!(
        c.zrange_by_score("z:a", 0.0, 35.0).await.unwrap(),
        vec![("u2".to_string(), 20.0), ("u3".to_string(), 30.0)]
    );
    assert_eq!(c.zrem_range_by_score("z:a", 0.0, 25.0).await.unwrap(), 1);
    assert!(c.zrem("z:a", "u3").await.unwrap());
    assert!(!c.zrem("z:a", "u3").await.unwrap());
    assert_eq!(
        c.zrange_by_score("z:a", f64::NEG_INFINITY, f64::INFINITY)
            .await
            .unwrap(),
        vec![("u1".to_string(), 40.0)]
    );
}

async fn wrong_type(c: &dyn Cache) {
    c.set_add("wt:set", &s(&["1"])).await.unwrap();
    assert!(
        c.get("wt:set").await.is_err(),
        "reading a set as a string is an error"
    );
    c.set("wt:str", "abc", None).await.unwrap();
    assert!(
        c.incr_by("wt:str", 1).await.is_err(),
        "incr on a non-number is an error"
    );
    assert!(
        c.list_len("wt:str").await.is_err(),
        "list op on a string is an error"
    );
}
