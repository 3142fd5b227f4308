//! Random identifiers: stream keys, IM tokens, lock owners. Drawn from the OS-seeded CSPRNG.

use rand::RngCore;

/// `bytes` random bytes as lowercase hex (`2 * bytes` characters, URL-safe).
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_hex_has_requested_length_and_differs() {
        let a = super::random_hex(16);
        let b = super::random_hex(16);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
