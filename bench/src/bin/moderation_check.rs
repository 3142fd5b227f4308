//! Per-message cost of the moderation check a gateway runs on every chat message
//! (`RuleBook::check`), and of the word filter alone, with a room holding the load:
//! 1,000 blocked words (mixed ASCII, CJK, full-width) and 500 muted users, plus a
//! deployment-wide list. Baseline: the same messages in a room with no rules. Also the time
//! to load and compile such a rule set (what a gateway pays per change).
//!
//! `cargo run --release -p livehouse-bench --bin moderation_check -- --messages 200000`
//! (bench/moderation.sh runs it).

use clap::Parser;
use livehouse_core::cache::{Cache, MemoryCache};
use livehouse_moderation::rules::{Mute, RoomRules};
use livehouse_moderation::{store, RuleBook, WordFilter};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Cost of RuleBook::check and of the word filter per chat message")]
struct Args {
    /// Messages judged per measurement.
    #[arg(long, default_value_t = 200_000)]
    messages: usize,
    /// Blocked words in the room.
    #[arg(long, default_value_t = 1000)]
    words: usize,
    /// Muted users in the room.
    #[arg(long, default_value_t = 500)]
    mutes: usize,
    /// Words in the deployment-wide list.
    #[arg(long, default_value_t = 200)]
    global_words: usize,
}

/// A deterministic mix of word shapes: ASCII, CJK, full-width.
fn words(n: usize, salt: &str) -> Vec<String> {
    (0..n)
        .map(|i| match i % 3 {
            0 => format!("{salt}word{i}"),
            1 => format!("广告{salt}{i}号"),
            _ => format!("ＢＡＤ{salt}{i}"),
        })
        .collect()
}

/// Chat-like messages (~20–60 characters); none contains a blocked word unless `hit`.
fn messages(hit: bool) -> Vec<String> {
    let mut m: Vec<String> = vec![
        "hello everyone, great stream tonight!".into(),
        "lol that play was insane 😂😂".into(),
        "主播今天状态很好，加油！".into(),
        "ｆｕｌｌ ｗｉｄｔｈ text from a phone keyboard".into(),
        "gg wp, see you tomorrow at the same time".into(),
        "这个游戏叫什么名字？有人知道吗".into(),
        "Can you play that song again please? 🙏".into(),
        "first time here, this is awesome".into(),
    ];
    if hit {
        m.push("buy now at roomword333 cheap".into());
        m.push("看广告room1号领取".into());
        m.push("ｒｏｏｍｗｏｒｄ０ in full width".into());
    }
    m
}

fn measure(label: &str, n: usize, mut f: impl FnMut(usize) -> bool) {
    // Warm up.
    for i in 0..n / 10 {
        black_box(f(i));
    }
    let start = Instant::now();
    let mut refused = 0usize;
    for i in 0..n {
        if black_box(f(i)) {
            refused += 1;
        }
    }
    let el = start.elapsed();
    println!(
        "{label:<48} {:>8.0} ns/msg  {:>10.0} msg/s  ({refused} of {n} refused)",
        el.as_nanos() as f64 / n as f64,
        n as f64 / el.as_secs_f64()
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new());
    let global = WordFilter::new(&words(args.global_words, "global"));
    let rules = RoomRules {
        room_id: 1,
        anchor_id: 1,
        version: 1,
        slow_mode_secs: 0,
        muted: (0..args.mutes as i64)
            .map(|u| Mute {
                user_id: 1_000_000 + u,
                until_ms: if u % 2 == 0 { 0 } else { i64::MAX },
            })
            .collect(),
        banned: (0..100).map(|u| 2_000_000 + u).collect(),
        admins: vec![3_000_000],
        words: words(args.words, "room"),
        closed: false,
    };
    let json_len = serde_json::to_string(&rules)?.len();
    store::write(cache.as_ref(), &rules).await?;
    let book = RuleBook::new(cache.clone(), global.clone());
    let started = Instant::now();
    book.load(1).await?;
    let load = started.elapsed();
    let empty = RuleBook::new(cache.clone(), WordFilter::default());
    empty.load(2).await?; // no rules for room 2
    println!(
        "rule set: {} words, {} mutes, {} deployment words; {json_len} bytes in the cache; \
         load + compile {:.2} ms",
        args.words,
        args.mutes,
        args.global_words,
        load.as_secs_f64() * 1000.0
    );

    let clean = messages(false);
    let mixed = messages(true);
    let n = args.messages;
    let now = livehouse_core::time::now_ms();
    measure("baseline: room without rules, clean messages", n, |i| {
        empty
            .check(2, 42, &clean[i % clean.len()], now)
            .refusal
            .is_some()
    });
    measure("check: 1,000 words + 500 mutes, clean messages", n, |i| {
        book.check(1, 42, &clean[i % clean.len()], now)
            .refusal
            .is_some()
    });
    measure("check: same, 3 of 11 messages blocked", n, |i| {
        book.check(1, 42, &mixed[i % mixed.len()], now)
            .refusal
            .is_some()
    });
    measure("check: a muted sender (no word scan)", n, |i| {
        book.check(
            1,
            1_000_000 + (i as i64 % 500),
            &clean[i % clean.len()],
            now,
        )
        .refusal
        .is_some()
    });
    let room_filter = WordFilter::new(&rules.words);
    measure("filter alone: 1,000 words, clean messages", n, |i| {
        room_filter.is_match(&clean[i % clean.len()])
    });
    for (label, pick) in [
        ("filter alone: ASCII messages only", [0usize, 1, 4, 6, 7]),
        ("filter alone: CJK messages only", [2, 5, 2, 5, 2]),
        ("filter alone: full-width messages only", [3, 3, 3, 3, 3]),
    ] {
        measure(label, n, |i| {
            room_filter.is_match(&clean[pick[i % pick.len()]])
        });
    }
    println!(
        "automaton memory, 1,000 words: {:.2} MB",
        room_filter.memory_usage() as f64 / 1e6
    );
    let started = Instant::now();
    let compiles = 20;
    for _ in 0..compiles {
        black_box(WordFilter::new(&rules.words));
    }
    println!(
        "compile 1,000 words: {:.2} ms each",
        started.elapsed().as_secs_f64() * 1000.0 / compiles as f64
    );
    Ok(())
}
