//! One conformance suite for every [`ChatLog`] adapter: the memory twin and Redis must agree on
//! every behaviour history and recovery rely on. `make` builds a fresh, empty log with the given
//! retention (a fresh key prefix for Redis).

use super::{ChatLog, LogConfig, NewEntry};
use bytes::Bytes;
use std::future::Future;
use std::time::Duration;

/// Kind of a chat entry in these checks (`bizCode 5555`), and of a recall (`5556`).
const CHAT: i32 = 5555;
const RECALL: i32 = 5556;

fn entry(id: &str, kind: i32, at_ms: i64) -> NewEntry {
    NewEntry {
        msg_id: id.to_string(),
        kind,
        at_ms,
        payload: Bytes::from(format!("{{\"id\":\"{id}\",\"q\":\"\\\"'\\u0000\"}}")),
    }
}

fn offsets(s: &super::Slice) -> Vec<u64> {
    s.entries.iter().map(|e| e.offset).collect()
}

/// Runs every check; panics with the name of the first behaviour that differs.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn(LogConfig) -> Fut,
    Fut: Future<Output = Box<dyn ChatLog>>,
{
    let cfg = LogConfig::default();
    offsets_epoch_and_idempotence(&*make(cfg.clone()).await).await;
    reads_after_an_offset(&*make(cfg.clone()).await).await;
    history_pages_back_over_one_kind(&*make(cfg.clone()).await).await;
    removed_messages_leave_holes_not_losses(&*make(cfg.clone()).await).await;
    rooms_are_separate_and_tops_batch(&*make(cfg.clone()).await).await;
    trims_by_length(
        &*make(LogConfig {
            max_len: 5,
            ..cfg.clone()
        })
        .await,
    )
    .await;
    trims_by_age(
        &*make(LogConfig {
            max_age: Duration::from_secs(60),
            ..cfg.clone()
        })
        .await,
    )
    .await;
    a_lost_meta_starts_a_new_epoch(
        &*make(LogConfig {
            meta_ttl: Duration::from_millis(300),
            max_age: Duration::from_millis(300),
            ..cfg
        })
        .await,
    )
    .await;
}

async fn offsets_epoch_and_idempotence(log: &dyn ChatLog) {
    let t = crate::time::now_ms();
    let start = log.top(1, t).await.unwrap();
    assert_eq!(start.offset, 0, "a new room starts at offset 0");
    assert!(!start.epoch.is_empty(), "with an epoch");
    assert_eq!(
        log.top(1, t).await.unwrap(),
        start,
        "top is stable without appends"
    );
    let mut got = Vec::new();
    for id in ["a", "b", "c"] {
        let a = log.append(1, entry(id, CHAT, t)).await.unwrap();
        assert!(a.fresh, "first append of {id}");
        assert_eq!(
            a.pos.epoch, start.epoch,
            "the epoch given before the first message holds"
        );
        got.push(a.pos.offset);
    }
    assert_eq!(got, vec![1, 2, 3], "offsets are +1 per message");
    let again = log.append(1, entry("b", CHAT, t)).await.unwrap();
    assert!(
        !again.fresh,
        "a message id already held is not appended again"
    );
    assert_eq!(again.pos.offset, 2, "and keeps its offset");
    assert_eq!(log.top(1, t).await.unwrap().offset, 3);
}

async fn reads_after_an_offset(log: &dyn ChatLog) {
    let t = crate::time::now_ms();
    for i in 1..=5 {
        log.append(7, entry(&format!("m{i}"), CHAT, t + i))
            .await
            .unwrap();
    }
    let all = log.read_after(7, 0, 100, t + 10).await.unwrap();
    assert_eq!(offsets(&all), vec![1, 2, 3, 4, 5]);
    assert_eq!((all.top, all.first, all.more), (5, 1, false));
    let e = &all.entries[2];
    assert_eq!((e.msg_id.as_str(), e.kind, e.at_ms), ("m3", CHAT, t + 3));
    assert_eq!(
        e.payload,
        Bytes::from("{\"id\":\"m3\",\"q\":\"\\\"'\\u0000\"}"),
        "payload bytes kept exactly"
    );
    assert!(all.covers_after(&all.epoch, 0), "everything from the start");
    let part = log.read_after(7, 1, 2, t + 10).await.unwrap();
    assert_eq!(offsets(&part), vec![2, 3]);
    assert!(part.more, "a read cut by its limit says more follow");
    assert!(
        !part.covers_after(&part.epoch, 1),
        "a cut read does not cover"
    );
    let none = log.read_after(7, 5, 10, t + 10).await.unwrap();
    assert!(none.entries.is_empty() && !none.more);
    assert!(none.covers_after(&none.epoch, 5), "up to date");
    assert!(
        !none.covers_after("other-epoch", 5),
        "another epoch never covers"
    );
    assert!(
        !none.covers_after(&none.epoch, 6),
        "an offset past the top never covers"
    );
}

async fn history_pages_back_over_one_kind(log: &dyn ChatLog) {
    let t = crate::time::now_ms();
    // chat 1, 2, recall 3, chat 4..=8
    for i in 1..=8u64 {
        let kind = if i == 3 { RECALL } else { CHAT };
        log.append(9, entry(&format!("h{i}"), kind, t))
            .await
            .unwrap();
    }
    let page = log.history(9, CHAT, None, 3, t).await.unwrap();
    assert_eq!(offsets(&page), vec![6, 7, 8], "the newest, oldest first");
    assert!(page.more);
    assert_eq!(page.top, 8);
    let older = log.history(9, CHAT, Some(6), 3, t).await.unwrap();
    assert_eq!(offsets(&older), vec![2, 4, 5], "other kinds are skipped");
    assert!(older.more);
    let last = log.history(9, CHAT, Some(2), 3, t).await.unwrap();
    assert_eq!(offsets(&last), vec![1]);
    assert!(!last.more);
    let none = log.history(9, CHAT, Some(1), 3, t).await.unwrap();
    assert!(none.entries.is_empty() && !none.more);
    assert_eq!(none.top, 8, "an empty page still tells the position");
    let recalls = log.history(9, RECALL, None, 10, t).await.unwrap();
    assert_eq!(offsets(&recalls), vec![3]);
}

async fn removed_messages_leave_holes_not_losses(log: &dyn ChatLog) {
    let t = crate::time::now_ms();
    for i in 1..=4 {
        log.append(3, entry(&format!("r{i}"), CHAT, t))
            .await
            .unwrap();
    }
    let gone = log
        .remove(3, &["r2".into(), "r3".into(), "nope".into()])
        .await
        .unwrap();
    assert_eq!(gone, vec![2, 3]);
    assert_eq!(
        log.remove(3, &["r2".into()]).await.unwrap(),
        Vec::<u64>::new(),
        "removing twice removes nothing"
    );
    let s = log.read_after(3, 0, 10, t).await.unwrap();
    assert_eq!(offsets(&s), vec![1, 4]);
    assert!(
        s.covers_after(&s.epoch, 0),
        "a hole left by a recall is not a loss"
    );
    let again = log.append(3, entry("r2", CHAT, t)).await.unwrap();
    assert!(
        !again.fresh && again.pos.offset == 2,
        "a recalled message delivered again is not appended again"
    );
    let h = log.history(3, CHAT, None, 10, t).await.unwrap();
    assert_eq!(
        offsets(&h),
        vec![1, 4],
        "history leaves recalled messages out"
    );
    log.remove(3, &["r1".into(), "r4".into()]).await.unwrap();
    let empty = log.read_after(3, 0, 10, t).await.unwrap();
    assert!(empty.entries.is_empty());
    assert_eq!(empty.top, 4, "the top offset stays");
    assert!(
        empty.covers_after(&empty.epoch, 4),
        "a client at the top is still up to date"
    );
}

async fn rooms_are_separate_and_tops_batch(log: &dyn ChatLog) {
    let t = crate::time::now_ms();
    log.append(11, entry("x", CHAT, t)).await.unwrap();
    log.append(11, entry("y", CHAT, t)).await.unwrap();
    let p12 = log.append(12, entry("x", CHAT, t)).await.unwrap();
    assert!(p12.fresh, "message ids are per room");
    assert_eq!(p12.pos.offset, 1, "offsets are per room");
    let tops = log.tops(&[11, 12, 13]).await.unwrap();
    assert_eq!(tops[0].as_ref().map(|p| p.offset), Some(2));
    assert_eq!(tops[1].as_ref().map(|p| p.offset), Some(1));
    assert_eq!(tops[2], None, "a room without a stream");
    assert!(log.tops(&[]).await.unwrap().is_empty());
}

async fn trims_by_length(log: &dyn ChatLog) {
    let t = crate::time::now_ms();
    for i in 1..=8 {
        log.append(5, entry(&format!("l{i}"), CHAT, t))
            .await
            .unwrap();
    }
    let s = log.read_after(5, 0, 100, t).await.unwrap();
    assert_eq!(
        offsets(&s),
        vec![4, 5, 6, 7, 8],
        "max_len 5 keeps the newest five"
    );
    assert_eq!(s.first, 4);
    assert!(
        !s.covers_after(&s.epoch, 2),
        "offset 3 was trimmed: no recovery"
    );
    assert!(s.covers_after(&s.epoch, 3));
    let old = log.append(5, entry("l1", CHAT, t)).await.unwrap();
    assert!(
        old.fresh && old.pos.offset == 9,
        "an id trimmed out is forgotten"
    );
}

async fn trims_by_age(log: &dyn ChatLog) {
    let t = crate::time::now_ms();
    for i in 0..4 {
        log.append(6, entry(&format!("a{i}"), CHAT, t + i * 10_000))
            .await
            .unwrap();
    }
    // 60 s retention, read at t + 75 s: the entries of t and t + 10 s are too old.
    let s = log.read_after(6, 0, 100, t + 75_000).await.unwrap();
    assert_eq!(offsets(&s), vec![3, 4]);
    assert_eq!(s.first, 3);
    assert!(!s.covers_after(&s.epoch, 1));
    let h = log.history(6, CHAT, None, 10, t + 75_000).await.unwrap();
    assert_eq!(
        offsets(&h),
        vec![3, 4],
        "history never returns expired entries"
    );
    assert_eq!(log.trim(6, t + 200_000).await.unwrap(), 2);
    let s = log.read_after(6, 0, 100, t + 200_000).await.unwrap();
    assert!(s.entries.is_empty());
    assert_eq!((s.top, s.first), (4, 5));
    assert!(
        s.covers_after(&s.epoch, 4),
        "at the top, nothing was missed"
    );
    assert!(!s.covers_after(&s.epoch, 3));
}

async fn a_lost_meta_starts_a_new_epoch(log: &dyn ChatLog) {
    let t = crate::time::now_ms();
    let first = log.append(8, entry("e1", CHAT, t)).await.unwrap();
    // meta_ttl 300 ms: wait (bounded) until the room's state has expired.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = crate::time::now_ms();
        if log.tops(&[8]).await.unwrap()[0].is_none() {
            let pos = log.top(8, now).await.unwrap();
            assert_ne!(pos.epoch, first.pos.epoch, "a new epoch after the loss");
            assert_eq!(pos.offset, 0);
            let s = log.read_after(8, 0, 10, now).await.unwrap();
            assert!(
                !s.covers_after(&first.pos.epoch, 1),
                "a client of the old epoch cannot recover"
            );
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "room state never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
