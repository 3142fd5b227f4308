//! A bounded memory of recently handled message ids, to drop the duplicates an at-least-once bus
//! redelivers (after a rebalance or restart, the uncommitted tail comes again).
//!
//! First-in first-out over a fixed capacity: an id is remembered for the next `capacity` ids.
//! Must not: grow past its capacity.

use std::collections::{HashSet, VecDeque};

pub struct Dedup {
    capacity: usize,
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl Dedup {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Dedup {
            capacity,
            order: VecDeque::with_capacity(capacity),
            seen: HashSet::new(),
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.seen.contains(id)
    }

    /// Remembers `id`; false when it was already known.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.order.push_back(id.to_string());
        self.seen.insert(id.to_string());
        true
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::Dedup;

    #[test]
    fn remembers_up_to_capacity() {
        let mut d = Dedup::new(2);
        assert!(d.insert("a"));
        assert!(!d.insert("a"), "duplicate");
        assert!(d.insert("b"));
        assert!(d.insert("c"));
        assert_eq!(d.len(), 2);
        assert!(!d.contains("a"), "oldest forgotten");
        assert!(d.contains("b") && d.contains("c"));
    }
}
