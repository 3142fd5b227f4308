//! What one loopback TCP write and one read cost on this machine, and the floor that puts under
//! a fan-out round: no gateway can deliver a message to V viewers with fewer than V socket writes
//! (one per connection) and the viewers need V reads. Not a test of livehouse code: it measures
//! the kernel, so the danmaku figures can be read against it (`bench/danmaku.sh floor`).
//!
//! One thread, plain non-blocking std sockets: `--pairs` connected pairs on 127.0.0.1
//! (`TCP_NODELAY` on the writing side, like the gateway). Each round writes one `--bytes`
//! message to every connection (timed), then reads each connection once (timed). Times are the
//! thread's CPU time, which on loopback includes the receiver's TCP input run by the writer.

use clap::Parser;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// Connected pairs (each uses 2 file descriptors).
    #[arg(long, default_value_t = 2000)]
    pairs: usize,
    /// Bytes per message (a danmaku frame is ≈ 250 bytes).
    #[arg(long, default_value_t = 250)]
    bytes: usize,
    /// Rounds (one write and one read per connection each).
    #[arg(long, default_value_t = 50)]
    rounds: usize,
    /// Viewers for the derived floor of one fan-out round.
    #[arg(long, default_value_t = 10_000)]
    viewers: usize,
}

fn thread_cpu_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_THREAD_CPUTIME_ID is always available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(
        a.pairs > 0 && a.rounds > 0 && a.bytes > 0,
        "all sizes must be > 0"
    );
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut writers = Vec::with_capacity(a.pairs);
    let mut readers = Vec::with_capacity(a.pairs);
    for _ in 0..a.pairs {
        let r = TcpStream::connect(addr)?;
        let (w, _) = listener.accept()?;
        w.set_nodelay(true)?;
        w.set_nonblocking(true)?;
        r.set_nonblocking(true)?;
        writers.push(w);
        readers.push(r);
    }
    let msg = vec![b'x'; a.bytes];
    let mut buf = vec![0u8; 64 * 1024];
    let (mut send_ns, mut recv_ns, mut reads, mut short) = (0u128, 0u128, 0u64, 0u64);
    let wall = Instant::now();
    for _ in 0..a.rounds {
        let t = thread_cpu_ns();
        for w in &mut writers {
            w.write_all(&msg)?;
        }
        send_ns += thread_cpu_ns() - t;
        let t = thread_cpu_ns();
        for r in &mut readers {
            match r.read(&mut buf) {
                Ok(n) => {
                    reads += 1;
                    if n < a.bytes {
                        short += 1;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => short += 1,
                Err(e) => return Err(e.into()),
            }
        }
        recv_ns += thread_cpu_ns() - t;
    }
    let wall_s = wall.elapsed().as_secs_f64();
    let ops = (a.pairs * a.rounds) as f64;
    let send_us = send_ns as f64 / 1e3 / ops;
    let recv_us = recv_ns as f64 / 1e3 / ops;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let round_ms = a.viewers as f64 * (send_us + recv_us) / 1e3;
    let send_round_ms = a.viewers as f64 * send_us / 1e3;
    println!(
        "loopback TCP, {} connections, {}-byte messages, {} rounds ({:.1} s, {} reads, {} short)",
        a.pairs, a.bytes, a.rounds, wall_s, reads, short
    );
    println!("  one write: {send_us:.2} µs of CPU   one read: {recv_us:.2} µs of CPU");
    println!(
        "  one fan-out round to {} viewers: {send_round_ms:.0} ms of CPU in writes + {:.0} ms in \
         reads = {round_ms:.0} ms; with all {cores} cores busy at least {:.0} ms per round, at \
         most {:.1} rounds/s",
        a.viewers,
        round_ms - send_round_ms,
        round_ms / cores,
        1e3 * cores / round_ms
    );
    println!(
        "JSON {}",
        serde_json::json!({
            "pairs": a.pairs, "bytes": a.bytes, "rounds": a.rounds, "sendUs": send_us,
            "recvUs": recv_us, "viewers": a.viewers, "roundCpuMs": round_ms, "cores": cores,
        })
    );
    Ok(())
}
