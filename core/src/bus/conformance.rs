//! One conformance suite for every [`Bus`] adapter: the memory twin and Kafka must agree on every
//! behaviour the services rely on — order per key, every group gets every message, members of a
//! group share the messages, uncommitted messages come back after a member leaves, committed ones
//! do not. Run it with a fresh bus and a name prefix unique to the run (topics and groups are
//! named from it): `conformance::run_all(&bus, "lhtest-abc123").await`.
//!
//! Every wait is bounded by [`RECV_DEADLINE`]; a failure names the behaviour that differs.

use super::{Bus, Delivery, Subscription};
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// Longest wait for one delivery (a Kafka group join or rebalance takes a few seconds).
pub const RECV_DEADLINE: Duration = Duration::from_secs(30);

async fn recv(sub: &mut Box<dyn Subscription>, what: &str) -> Delivery {
    match tokio::time::timeout(RECV_DEADLINE, sub.next()).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => panic!("{what}: next() failed: {e}"),
        Err(_) => panic!("{what}: no delivery within {RECV_DEADLINE:?}"),
    }
}

fn text(d: &Delivery) -> String {
    String::from_utf8(d.payload.to_vec()).expect("utf-8 payload")
}

async fn publish(bus: &dyn Bus, topic: &str, key: &str, payload: &str) {
    tokio::time::timeout(
        RECV_DEADLINE,
        bus.publish(topic, key, Bytes::from(payload.to_string())),
    )
    .await
    .unwrap_or_else(|_| panic!("publish to {topic} did not finish in time"))
    .unwrap_or_else(|e| panic!("publish to {topic} failed: {e}"));
}

/// Runs every check; panics with the name of the first behaviour that differs.
pub async fn run_all(bus: &dyn Bus, prefix: &str) {
    order_per_key(bus, prefix).await;
    every_group_gets_every_message(bus, prefix).await;
    members_share_a_group(bus, prefix).await;
    uncommitted_is_redelivered_after_leave(bus, prefix).await;
    tail_group_sees_new_messages(bus, prefix).await;
}

/// Messages with the same key arrive in publish order (across keys, no order is promised).
async fn order_per_key(bus: &dyn Bus, prefix: &str) {
    let topic = format!("{prefix}.order");
    let mut sub = bus
        .subscribe(&topic, &format!("{prefix}-order"))
        .await
        .unwrap();
    let keys = ["room-1", "room-2", "room-3"];
    let per_key = 20;
    for i in 0..per_key {
        for k in keys {
            publish(bus, &topic, k, &format!("{k}:{i}")).await;
        }
    }
    let mut seen: HashMap<String, Vec<usize>> = HashMap::new();
    for _ in 0..keys.len() * per_key {
        let d = recv(&mut sub, "order_per_key").await;
        let t = text(&d);
        let (k, i) = t.split_once(':').unwrap();
        assert_eq!(d.key, k, "order_per_key: delivery carries its key");
        assert_eq!(d.topic, topic, "order_per_key: delivery carries its topic");
        seen.entry(k.to_string())
            .or_default()
            .push(i.parse().unwrap());
        sub.commit(&d).await.unwrap();
    }
    for k in keys {
        assert_eq!(
            seen[k],
            (0..per_key).collect::<Vec<_>>(),
            "order_per_key: key {k} in order"
        );
    }
}

/// Two groups on one topic each receive all messages.
async fn every_group_gets_every_message(bus: &dyn Bus, prefix: &str) {
    let topic = format!("{prefix}.groups");
    let mut a = bus
        .subscribe(&topic, &format!("{prefix}-ga"))
        .await
        .unwrap();
    let mut b = bus
        .subscribe(&topic, &format!("{prefix}-gb"))
        .await
        .unwrap();
    let want: BTreeSet<String> = (0..10).map(|i| format!("m{i}")).collect();
    for (i, m) in want.iter().enumerate() {
        publish(bus, &topic, &format!("k{}", i % 4), m).await;
    }
    for (name, sub) in [("group a", &mut a), ("group b", &mut b)] {
        let mut got = BTreeSet::new();
        while got.len() < want.len() {
            let d = recv(sub, "every_group_gets_every_message").await;
            got.insert(text(&d));
            sub.commit(&d).await.unwrap();
        }
        assert_eq!(got, want, "every_group_gets_every_message: {name}");
    }
}

/// Reads both members of a group until `seen` returns true or `deadline` passes (both are
/// polled: a member that is not polled may hold up the group). Each delivery is committed, then
/// handed to `seen` with the member's name. Returns whether `seen` said done.
async fn read_both(
    a: &mut Box<dyn Subscription>,
    b: &mut Box<dyn Subscription>,
    deadline: tokio::time::Instant,
    mut seen: impl FnMut(&'static str, String) -> bool,
) -> bool {
    loop {
        let (who, d) = tokio::select! {
            r = a.next() => { let d = r.unwrap(); a.commit(&d).await.unwrap(); ("a", d) }
            r = b.next() => { let d = r.unwrap(); b.commit(&d).await.unwrap(); ("b", d) }
            _ = tokio::time::sleep_until(deadline) => return false,
        };
        if seen(who, text(&d)) {
            return true;
        }
    }
}

/// Two members of one group share its messages: once both are receiving, each message reaches
/// exactly one of them, and both get some. After the first member has left, the other one gets
/// everything published to the topic.
async fn members_share_a_group(bus: &dyn Bus, prefix: &str) {
    let topic = format!("{prefix}.share");
    let group = format!("{prefix}-share");
    let mut a = bus.subscribe(&topic, &group).await.unwrap();
    let mut b = bus.subscribe(&topic, &group).await.unwrap();

    // Settle: until both members have received something, the group may still be sharing out
    // its partitions (a Kafka rebalance takes seconds), and what is delivered meanwhile may come
    // twice (at-least-once). Warm-up messages (`w…`) are published until both have one.
    let deadline = tokio::time::Instant::now() + RECV_DEADLINE * 2;
    let (mut a_got, mut b_got) = (false, false);
    let mut n = 0;
    while !(a_got && b_got) {
        n += 1;
        publish(bus, &topic, &format!("warm-{n}"), &format!("w{n}")).await;
        let window = (tokio::time::Instant::now() + Duration::from_millis(200)).min(deadline);
        read_both(&mut a, &mut b, window, |who, _| {
            match who {
                "a" => a_got = true,
                _ => b_got = true,
            }
            false
        })
        .await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "members_share_a_group: the members never both received (a {a_got}, b {b_got})"
        );
    }

    // Both are members now: each message goes to exactly one of them.
    let want: BTreeSet<String> = (0..24).map(|i| format!("s{i}")).collect();
    for (i, m) in want.iter().enumerate() {
        publish(bus, &topic, &format!("key-{i}"), m).await;
    }
    let mut got: Vec<(&'static str, String)> = Vec::new();
    let mut distinct = BTreeSet::new();
    let all = read_both(
        &mut a,
        &mut b,
        tokio::time::Instant::now() + RECV_DEADLINE,
        |who, m| {
            if m.starts_with('s') {
                distinct.insert(m.clone());
                got.push((who, m));
            }
            distinct.len() == want.len()
        },
    )
    .await;
    assert!(
        all,
        "members_share_a_group: only {} of {} delivered",
        distinct.len(),
        want.len()
    );
    // A duplicate would come right after: listen a little longer (silence is the expectation).
    read_both(
        &mut a,
        &mut b,
        tokio::time::Instant::now() + Duration::from_millis(500),
        |who, m| {
            if m.starts_with('s') {
                got.push((who, m));
            }
            false
        },
    )
    .await;
    let mut per_message: HashMap<&str, Vec<&str>> = HashMap::new();
    for (who, m) in &got {
        per_message.entry(m.as_str()).or_default().push(who);
    }
    let twice: Vec<_> = per_message.iter().filter(|(_, w)| w.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "members_share_a_group: each message reaches exactly one member, these did not: {twice:?}"
    );
    assert_eq!(
        per_message
            .keys()
            .map(|m| m.to_string())
            .collect::<BTreeSet<_>>(),
        want,
        "members_share_a_group: the members together get every message"
    );
    for who in ["a", "b"] {
        assert!(
            got.iter().any(|(w, _)| *w == who),
            "members_share_a_group: member {who} got none of 24 messages: they are not shared"
        );
    }

    // The first member leaves: its share goes to the other, which then gets everything (after
    // a Kafka rebalance, which may take seconds: polled with a deadline).
    drop(a);
    let want: BTreeSet<String> = (0..24).map(|i| format!("t{i}")).collect();
    for (i, m) in want.iter().enumerate() {
        publish(bus, &topic, &format!("key-{i}"), m).await;
    }
    let mut got = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + RECV_DEADLINE * 2;
    while got.len() < want.len() {
        let d = tokio::select! {
            r = b.next() => r.unwrap(),
            _ = tokio::time::sleep_until(deadline) => panic!(
                "members_share_a_group: after the first member left, the other got only {} of {}",
                got.len(),
                want.len()
            ),
        };
        b.commit(&d).await.unwrap();
        let m = text(&d);
        if m.starts_with('t') {
            got.insert(m);
        }
    }
    assert_eq!(
        got, want,
        "members_share_a_group: after the first member left, the other gets everything"
    );
}

/// A member reads six messages of one key and commits the third, then leaves: the next member
/// of the group receives the fourth to sixth again (at-least-once), not the committed ones.
/// After it commits everything and leaves, a new member receives only newer messages.
async fn uncommitted_is_redelivered_after_leave(bus: &dyn Bus, prefix: &str) {
    let topic = format!("{prefix}.redeliver");
    let group = format!("{prefix}-redeliver");
    let mut a = bus.subscribe(&topic, &group).await.unwrap();
    for i in 1..=6 {
        publish(bus, &topic, "one-key", &format!("r{i}")).await;
    }
    for i in 1..=6 {
        let d = recv(&mut a, "redelivery: first member").await;
        assert_eq!(
            text(&d),
            format!("r{i}"),
            "redelivery: first member reads in order"
        );
        if i == 3 {
            a.commit(&d).await.unwrap();
        }
    }
    drop(a);

    let mut b = bus.subscribe(&topic, &group).await.unwrap();
    for i in 4..=6 {
        let d = recv(&mut b, "redelivery: second member").await;
        assert_eq!(
            text(&d),
            format!("r{i}"),
            "redelivery: uncommitted messages come again, committed ones do not"
        );
        if i == 6 {
            b.commit(&d).await.unwrap();
        }
    }
    drop(b);

    let mut c = bus.subscribe(&topic, &group).await.unwrap();
    publish(bus, &topic, "one-key", "r7").await;
    let d = recv(&mut c, "redelivery: third member").await;
    assert_eq!(
        text(&d),
        "r7",
        "redelivery: nothing committed is delivered again"
    );
    c.commit(&d).await.unwrap();
}

/// A tail subscription receives what is published once it is receiving; nothing is required of
/// older messages. (It is polled until a marker arrives, since a Kafka tail group may start at
/// any point while it joins.)
async fn tail_group_sees_new_messages(bus: &dyn Bus, prefix: &str) {
    let topic = format!("{prefix}.tail");
    let mut t = bus
        .subscribe_tail(&topic, &format!("{prefix}-tail"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + RECV_DEADLINE;
    let mut n = 0;
    loop {
        n += 1;
        publish(bus, &topic, "k", &format!("t{n}")).await;
        let got = tokio::time::timeout(Duration::from_millis(500), t.next()).await;
        if let Ok(r) = got {
            let d = r.unwrap();
            assert!(
                text(&d).starts_with('t'),
                "tail: receives its topic's messages"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tail_group_sees_new_messages: nothing received"
        );
    }
}
