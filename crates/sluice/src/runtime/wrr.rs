//! Weighted round robin as Traefik does it: earliest deadline first.
//!
//! Every entry has a deadline that grows by `1/weight` each time it is picked; the entry with the
//! earliest deadline goes next. Weights 1:2 therefore give one `A` in every three picks, and the
//! picks of any weight ratio are spread evenly rather than bunched.
//!
//! Deadlines are kept as exact fractions (`picks / weight`) and compared by cross-multiplication,
//! so equal deadlines are really equal. Ties go to the entry that waited longest (Traefik breaks
//! them by heap layout; this rule gives the same sequences for its tested ratios, 1:2 and 11:3,
//! and is one a person can predict).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// The schedule of one balancer: which entry (by index) comes next.
#[derive(Debug, Clone)]
pub struct Edf {
    heap: BinaryHeap<Slot>,
    clock: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    /// Deadline numerator: how many times this entry has been scheduled, starting at 1.
    turns: u64,
    weight: u64,
    /// When the entry was last scheduled; the smaller wins a tie.
    stamp: u64,
    index: usize,
}

impl Slot {
    /// Deadline order: `turns/weight`, earlier first, ties to the longest waiting.
    fn deadline_cmp(&self, other: &Self) -> Ordering {
        let lhs = u128::from(self.turns) * u128::from(other.weight);
        let rhs = u128::from(other.turns) * u128::from(self.weight);
        lhs.cmp(&rhs).then(self.stamp.cmp(&other.stamp))
    }
}

impl Ord for Slot {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: reverse so the earliest deadline is on top.
        other.deadline_cmp(self)
    }
}

impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Edf {
    /// A schedule over entries with these weights; entries of weight 0 are never picked.
    pub fn new(weights: impl IntoIterator<Item = u64>) -> Self {
        let heap: BinaryHeap<Slot> = weights
            .into_iter()
            .enumerate()
            .filter(|(_, w)| *w > 0)
            .map(|(index, weight)| Slot {
                turns: 1,
                weight,
                stamp: index as u64,
                index,
            })
            .collect();
        let clock = heap.len() as u64;
        Self { heap, clock }
    }

    /// The next entry for which `usable` holds, or None when no entry is usable.
    ///
    /// Unusable entries still use up their turn, as in Traefik, so a recovering entry does not
    /// receive a burst of catch-up traffic.
    pub fn pick(&mut self, mut usable: impl FnMut(usize) -> bool) -> Option<usize> {
        for _ in 0..self.heap.len() {
            let mut slot = self.heap.pop()?;
            let index = slot.index;
            slot.turns += 1;
            slot.stamp = self.clock;
            self.clock += 1;
            self.heap.push(slot);
            if usable(index) {
                return Some(index);
            }
        }
        None
    }

    /// Number of pickable entries (weight > 0).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when no entry can ever be picked.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(weights: &[u64], n: usize) -> String {
        let mut edf = Edf::new(weights.iter().copied());
        (0..n)
            .map(|_| {
                edf.pick(|_| true)
                    .map(|i| (b'A' + i as u8) as char)
                    .unwrap_or('-')
            })
            .collect()
    }

    #[test]
    fn one_to_two_gives_one_a_in_every_three() {
        assert_eq!(sequence(&[1, 2], 6), "BABBAB");
        let seq = sequence(&[1, 2], 3000);
        assert_eq!(seq.matches('A').count(), 1000);
        for window in seq.as_bytes().windows(3) {
            assert_eq!(
                window.iter().filter(|c| **c == b'A').count(),
                1,
                "{seq:.30}"
            );
        }
    }

    #[test]
    fn three_to_one_gives_three_a_per_four() {
        let seq = sequence(&[3, 1], 8);
        assert_eq!(seq.matches('A').count(), 6);
        assert_eq!(&seq[..4].matches('B').count(), &1);
    }

    #[test]
    fn bias_eleven_to_three_matches_traefik() {
        // Traefik's TestBalancerBias expects this exact sequence for weights 11:3.
        assert_eq!(sequence(&[11, 3], 14), "AAABAAAABAAABA");
    }

    #[test]
    fn weight_zero_is_never_picked() {
        let seq = sequence(&[0, 1], 10);
        assert_eq!(seq, "BBBBBBBBBB");
        assert_eq!(sequence(&[0], 2), "--");
    }

    #[test]
    fn unusable_entries_are_skipped_but_spend_their_turn() {
        let mut edf = Edf::new([1, 1]);
        let picks: Vec<_> = (0..4).map(|_| edf.pick(|i| i == 1)).collect();
        assert_eq!(picks, vec![Some(1); 4]);
        assert_eq!(edf.pick(|_| false), None);
    }
}
