//! Password hashing (argon2id, the crate's default cost: 19 MiB, 2 passes) on a fixed pool of
//! worker threads, each with one memory buffer allocated at start and reused for every hash.
//!
//! Why: argon2 allocates its 19 MiB per call. On the runtime's blocking threads, 16 sign-ups at a
//! time grew glibc's per-thread arenas (and its mmap threshold) until the process kept 3 GB it
//! never returned. Here the memory is `workers × 19 MiB` for the life of the process, whatever
//! the load; work beyond the workers waits in a bounded queue, and beyond that is refused
//! ([`PasswordError::Busy`], a 503 with `Retry-After`).
//!
//! A login for an unknown account verifies against a dummy hash of the same cost, so a wrong
//! password takes the same time whether or not the account exists.
//!
//! Must not: know accounts or HTTP; block the async runtime.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};

/// Why a hash or a check could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing is busy; retry in a moment")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

enum Job {
    Hash {
        password: String,
        reply: oneshot::Sender<Result<String, PasswordError>>,
    },
    Verify {
        /// The stored PHC string; `None` for an unknown account (checked against the dummy).
        phc: Option<String>,
        password: String,
        reply: oneshot::Sender<bool>,
    },
}

/// The hashing pool. Cheap to clone.
#[derive(Clone)]
pub struct Passwords {
    tx: mpsc::Sender<Job>,
    workers: usize,
    /// argon2 computations made (hashes and checks, the dummy's included).
    computed: Arc<AtomicU64>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("workers", &self.workers)
            .finish()
    }
}

/// Default number of hashing threads.
pub const DEFAULT_WORKERS: usize = 2;
/// Default number of waiting hash/verify jobs beyond those being worked on.
pub const DEFAULT_QUEUE: usize = 64;

impl Passwords {
    /// Starts `workers` threads (at least 1), each owning one argon2 memory buffer, behind a
    /// queue of `queue` jobs (at least 1).
    pub fn start(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        let (tx, rx) = mpsc::channel::<Job>(queue.max(1));
        let rx = Arc::new(parking_lot::Mutex::new(rx));
        // One dummy hash for the whole pool, made by the first login of an unknown name.
        let dummy: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
        let computed = Arc::new(AtomicU64::new(0));
        for i in 0..workers {
            let (rx, dummy, computed) = (rx.clone(), dummy.clone(), computed.clone());
            std::thread::Builder::new()
                .name(format!("livehouse-argon2-{i}"))
                .spawn(move || worker(rx, dummy, computed))
                .expect("spawning a hashing thread");
        }
        Passwords {
            tx,
            workers,
            computed,
        }
    }

    /// How many argon2 computations the pool has made (the dummy hash's first one included).
    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) of `password` with a fresh salt.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Hash {
            password: password.to_string(),
            reply,
        })?;
        rx.await
            .map_err(|_| PasswordError::Failed("hashing thread stopped".into()))?
    }

    /// Whether `password` matches the stored `phc`; with `None` (no such account) a dummy is
    /// checked instead, at the same cost, and the answer is `false`.
    pub async fn verify(&self, phc: Option<&str>, password: &str) -> Result<bool, PasswordError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Verify {
            phc: phc.map(str::to_string),
            password: password.to_string(),
            reply,
        })?;
        rx.await
            .map_err(|_| PasswordError::Failed("hashing thread stopped".into()))
    }

    fn submit(&self, job: Job) -> Result<(), PasswordError> {
        self.tx.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                metrics::counter!("livehouse_password_busy_total").increment(1);
                PasswordError::Busy
            }
            mpsc::error::TrySendError::Closed(_) => {
                PasswordError::Failed("hashing threads stopped".into())
            }
        })
    }
}

fn random_password() -> String {
    livehouse_core::ids::random_hex(16)
}

/// One thread: takes jobs until the pool is dropped, always with the same buffer.
fn worker(
    rx: Arc<parking_lot::Mutex<mpsc::Receiver<Job>>>,
    dummy: Arc<OnceLock<String>>,
    computed: Arc<AtomicU64>,
) {
    let mut blocks = vec![Block::default(); Params::default().block_count()];
    loop {
        // One worker waits on the queue at a time; the others wait for the lock.
        let job = rx.lock().blocking_recv();
        let Some(job) = job else { return };
        computed.fetch_add(1, Ordering::Relaxed);
        match job {
            Job::Hash { password, reply } => {
                let _ = reply.send(hash(&password, &mut blocks));
            }
            Job::Verify {
                phc,
                password,
                reply,
            } => {
                let ok = match &phc {
                    Some(phc) => verify(phc, &password, &mut blocks),
                    None => {
                        let dummy = dummy.get_or_init(|| {
                            computed.fetch_add(1, Ordering::Relaxed);
                            hash(&random_password(), &mut blocks).unwrap_or_default()
                        });
                        let _ = verify(dummy, &password, &mut blocks);
                        false
                    }
                };
                let _ = reply.send(ok);
            }
        }
    }
}

/// argon2id with the default cost, into `blocks`.
fn hash(password: &str, blocks: &mut [Block]) -> Result<String, PasswordError> {
    let fail = |e: &dyn std::fmt::Display| PasswordError::Failed(e.to_string());
    let params = Params::default();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt
        .as_salt()
        .decode_b64(&mut salt_bytes)
        .map_err(|e| fail(&e))?;
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = argon2::password_hash::Output::init_with(len, |out| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), salt_raw, out, &mut *blocks)
            .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .map_err(|e| fail(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: argon2::password_hash::ParamsString::try_from(&params).map_err(|e| fail(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Checks `password` against a PHC string, hashing into `blocks` (or, for a stored cost larger
/// than the buffer, into a buffer of that size for this call only).
fn verify(phc: &str, password: &str, blocks: &mut [Block]) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(alg), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
        parsed.salt,
        parsed.hash,
    ) else {
        return false;
    };
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .ok()
        .flatten()
        .unwrap_or_default();
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let argon = Argon2::new(alg, version, params.clone());
    let mut own;
    let memory: &mut [Block] = if params.block_count() <= blocks.len() {
        blocks
    } else {
        own = vec![Block::default(); params.block_count()];
        &mut own
    };
    let got = argon2::password_hash::Output::init_with(expected.len(), |out| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), salt_raw, out, &mut *memory)
            .map_err(|_| argon2::password_hash::Error::Crypto)
    });
    // `Output`'s equality is constant-time.
    got.is_ok_and(|got| got == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordHasher;

    #[tokio::test]
    async fn hashes_verify_and_match_the_argon2_crate() {
        let pool = Passwords::start(2, 8);
        let phc = pool.hash("correct horse").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(pool.verify(Some(&phc), "correct horse").await.unwrap());
        assert!(!pool.verify(Some(&phc), "wrong horse").await.unwrap());
        assert!(!pool.verify(None, "correct horse").await.unwrap());
        assert!(!pool.verify(Some("not a hash"), "x").await.unwrap());
        // Hashes made by the crate's own API (older accounts) verify here, and ours there.
        let salt = SaltString::generate(&mut OsRng);
        let old = Argon2::default()
            .hash_password(b"old password", &salt)
            .unwrap()
            .to_string();
        assert!(pool.verify(Some(&old), "old password").await.unwrap());
        use argon2::password_hash::PasswordVerifier;
        let parsed = PasswordHash::new(&phc).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
    }

    #[tokio::test]
    async fn an_unknown_name_costs_one_argon2_computation_like_a_wrong_password() {
        let pool = Passwords::start(1, 8);
        let phc = pool.hash("right password").await.unwrap();
        // The first unknown name also makes the dummy; after that, one computation each.
        assert!(!pool.verify(None, "warm up").await.unwrap());
        let before = pool.computed();
        assert!(!pool.verify(Some(&phc), "wrong password").await.unwrap());
        let wrong = pool.computed() - before;
        assert!(!pool.verify(None, "wrong password").await.unwrap());
        let unknown = pool.computed() - before - wrong;
        assert_eq!((wrong, unknown), (1, 1));
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_not_grown() {
        let pool = Passwords::start(1, 1);
        let jobs: Vec<_> = (0..8)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.hash(&format!("password{i}")).await })
            })
            .collect();
        let mut busy = 0;
        for j in jobs {
            match j.await.unwrap() {
                Ok(_) => {}
                Err(PasswordError::Busy) => busy += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(
            busy > 0,
            "8 at once on 1 worker + 1 queued: some are refused"
        );
    }
}
