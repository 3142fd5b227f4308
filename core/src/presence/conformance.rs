//! One conformance suite for every [`Presence`] adapter. `make` builds a fresh, empty store
//! (a fresh key prefix for Redis) with a live window of 2 s; every check drives the clock
//! itself, so nothing here waits.

use super::{Conn, Presence};
use crate::events::GatewayInfo;
use std::future::Future;

fn gw(id: &str, sessions: u64) -> GatewayInfo {
    GatewayInfo {
        id: id.to_string(),
        ws_addr: format!("ws://{id}/ws"),
        tcp_addr: format!("{id}:8085"),
        push_url: format!("http://{id}"),
        sessions,
    }
}

fn conn(gateway: &str, conn: u64, user: i64, device: &str, room: Option<i64>, at_ms: i64) -> Conn {
    Conn {
        gateway: gateway.to_string(),
        conn,
        user,
        device: device.to_string(),
        room,
        at_ms,
    }
}

fn ids(v: &[Conn]) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = v.iter().map(|c| (c.gateway.clone(), c.conn)).collect();
    v.sort();
    v
}

/// Runs every check; panics with the name of the first behaviour that differs.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Box<dyn Presence>>,
{
    gateways_live_by_their_last_beat(&*make().await).await;
    a_new_login_displaces_the_same_slot_anywhere(&*make().await).await;
    a_user_holds_at_most_the_limit(&*make().await).await;
    room_counts_follow_beats_and_liveness(&*make().await).await;
    a_dead_gateway_takes_its_state_with_it(&*make().await).await;
    restore_writes_a_gateway_part_again(&*make().await).await;
}

async fn gateways_live_by_their_last_beat(p: &dyn Presence) {
    let t = 1_000_000;
    assert!(p.gateways(t).await.unwrap().is_empty());
    let first = p.beat(&gw("a", 3), &[], t).await.unwrap();
    assert!(!first.known, "a first beat finds no state");
    assert!(p.beat(&gw("a", 4), &[], t + 500).await.unwrap().known);
    p.beat(&gw("b", 0), &[], t + 100).await.unwrap();
    let live = p.gateways(t + 1_000).await.unwrap();
    assert_eq!(
        live,
        vec![gw("a", 4), gw("b", 0)],
        "the latest info of each"
    );
    // The live window is 2 s: b's last beat was at t + 100.
    let live = p.gateways(t + 2_100).await.unwrap();
    assert_eq!(
        live.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(),
        ["a"]
    );
    assert!(p.gateways(t + 2_500).await.unwrap().is_empty());
    p.beat(&gw("b", 1), &[], t + 3_000).await.unwrap();
    assert_eq!(p.gateways(t + 3_000).await.unwrap().len(), 1, "b is back");
    p.remove_gateway("b").await.unwrap();
    assert!(p.gateways(t + 3_000).await.unwrap().is_empty());
    assert!(
        !p.beat(&gw("b", 1), &[], t + 3_100).await.unwrap().known,
        "a removed gateway's state is gone"
    );
}

async fn a_new_login_displaces_the_same_slot_anywhere(p: &dyn Presence) {
    let t = 2_000_000;
    p.beat(&gw("a", 0), &[], t).await.unwrap();
    p.beat(&gw("b", 0), &[], t).await.unwrap();
    let c1 = conn("a", 1, 7, "tab-1", Some(5), t);
    assert!(p.join(&c1, 5, t).await.unwrap().is_empty());
    // Another device of the same user, and the same device in another room: kept.
    let c2 = conn("b", 2, 7, "tab-2", Some(5), t + 1);
    let c3 = conn("a", 3, 7, "tab-1", Some(6), t + 2);
    assert!(p.join(&c2, 5, t + 2).await.unwrap().is_empty());
    assert!(p.join(&c3, 5, t + 2).await.unwrap().is_empty());
    assert_eq!(
        ids(&p.user_conns(7, t + 2).await.unwrap()),
        ids(&[c1.clone(), c2.clone(), c3.clone()])
    );
    // tab-1 in room 5 again, on the other gateway: c1 is displaced.
    let c4 = conn("b", 4, 7, "tab-1", Some(5), t + 3);
    let displaced = p.join(&c4, 5, t + 3).await.unwrap();
    assert_eq!(
        displaced,
        vec![c1.clone()],
        "the same user, device and room"
    );
    assert_eq!(
        ids(&p.user_conns(7, t + 3).await.unwrap()),
        ids(&[c2.clone(), c3.clone(), c4.clone()])
    );
    // A client without a device id (the seed clients): the same empty device replaces.
    let s1 = conn("a", 10, 8, "", Some(5), t);
    let s2 = conn("b", 11, 8, "", Some(5), t + 1);
    p.join(&s1, 5, t).await.unwrap();
    assert_eq!(p.join(&s2, 5, t + 1).await.unwrap(), vec![s1]);
    // Leaving twice, or leaving a displaced connection, changes nothing else.
    p.leave(&c1).await.unwrap();
    p.leave(&c2).await.unwrap();
    p.leave(&c2).await.unwrap();
    assert_eq!(ids(&p.user_conns(7, t + 3).await.unwrap()), ids(&[c3, c4]));
    assert!(p.user_conns(999, t).await.unwrap().is_empty());
}

async fn a_user_holds_at_most_the_limit(p: &dyn Presence) {
    let t = 3_000_000;
    p.beat(&gw("a", 0), &[], t).await.unwrap();
    let mut all = Vec::new();
    for i in 0..3u64 {
        let c = conn("a", i, 9, &format!("d{i}"), Some(1), t + i as i64);
        assert!(p.join(&c, 3, t).await.unwrap().is_empty());
        all.push(c);
    }
    let fourth = conn("a", 3, 9, "d3", Some(1), t + 10);
    assert_eq!(
        p.join(&fourth, 3, t).await.unwrap(),
        vec![all[0].clone()],
        "over the limit, the oldest goes"
    );
    assert_eq!(p.user_conns(9, t).await.unwrap().len(), 3);
}

async fn room_counts_follow_beats_and_liveness(p: &dyn Presence) {
    let t = 4_000_000;
    p.beat(&gw("a", 0), &[(1, 3), (2, 1)], t).await.unwrap();
    p.beat(&gw("b", 0), &[(1, 2)], t).await.unwrap();
    assert_eq!(
        p.room_gateways(1, t).await.unwrap(),
        vec![("a".to_string(), 3), ("b".to_string(), 2)]
    );
    assert_eq!(p.room_counts(&[1, 2, 3], t).await.unwrap(), vec![5, 1, 0]);
    // a's count in room 1 drops to 0: it no longer serves the room.
    p.beat(&gw("a", 0), &[(1, 0)], t + 1_500).await.unwrap();
    assert_eq!(
        p.room_gateways(1, t + 1_500).await.unwrap(),
        vec![("b".to_string(), 2)]
    );
    // b stops beating: its count is gone for every reader once its window passed.
    assert_eq!(p.room_counts(&[1, 2], t + 2_500).await.unwrap(), vec![0, 1]);
    assert!(p.room_gateways(1, t + 2_500).await.unwrap().is_empty());
    assert!(p.room_counts(&[], t).await.unwrap().is_empty());
}

async fn a_dead_gateway_takes_its_state_with_it(p: &dyn Presence) {
    let t = 5_000_000;
    p.beat(&gw("dead", 0), &[(4, 1)], t).await.unwrap();
    p.beat(&gw("alive", 0), &[(4, 1)], t).await.unwrap();
    let d = conn("dead", 1, 20, "x", Some(4), t);
    let a = conn("alive", 2, 21, "x", Some(4), t);
    p.join(&d, 5, t).await.unwrap();
    p.join(&a, 5, t).await.unwrap();
    // One live window later the dead gateway's connection is gone for readers.
    p.beat(&gw("alive", 0), &[], t + 1_900).await.unwrap();
    assert!(p.user_conns(20, t + 2_100).await.unwrap().is_empty());
    assert_eq!(p.user_conns(21, t + 2_100).await.unwrap(), vec![a.clone()]);
    // Its user logs in elsewhere: the dead entry is not "displaced" (nobody to close).
    let again = conn("alive", 3, 20, "x", Some(4), t + 2_200);
    assert!(p.join(&again, 5, t + 2_200).await.unwrap().is_empty());
    // Sweeping after two windows removes what it wrote and names the rooms.
    p.beat(&gw("alive", 0), &[], t + 3_900).await.unwrap();
    assert!(
        p.sweep(t + 3_000).await.unwrap().is_empty(),
        "not dead long enough"
    );
    assert_eq!(p.sweep(t + 4_100).await.unwrap(), vec![4]);
    assert!(p.sweep(t + 4_100).await.unwrap().is_empty(), "once");
    assert!(
        !p.beat(&gw("dead", 0), &[], t + 5_000).await.unwrap().known,
        "a swept gateway coming back finds nothing"
    );
}

async fn restore_writes_a_gateway_part_again(p: &dyn Presence) {
    let t = 6_000_000;
    p.beat(&gw("g", 0), &[(8, 2), (9, 1)], t).await.unwrap();
    p.remove_gateway("g").await.unwrap();
    let beat = p.beat(&gw("g", 2), &[], t + 100).await.unwrap();
    assert!(!beat.known, "the store lost this gateway's state");
    let c = vec![
        conn("g", 1, 30, "a", Some(8), t),
        conn("g", 2, 31, "b", Some(8), t),
        conn("other", 3, 32, "c", Some(8), t),
    ];
    p.restore("g", &c, &[(8, 2)]).await.unwrap();
    assert!(p.beat(&gw("g", 2), &[], t + 200).await.unwrap().known);
    assert_eq!(p.user_conns(30, t + 200).await.unwrap(), vec![c[0].clone()]);
    assert!(
        p.user_conns(32, t + 200).await.unwrap().is_empty(),
        "a gateway restores only its own connections"
    );
    assert_eq!(p.room_counts(&[8, 9], t + 200).await.unwrap(), vec![2, 0]);
}
