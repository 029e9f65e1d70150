//! Placement failure rate of k slots among B buckets (development aid).
#![allow(clippy::unwrap_used, reason = "example")]
use blindsight_pir::batch::BatchLayout;
fn main() {
    for (b, w) in [(15usize, 3usize), (18, 3), (21, 3), (16, 4), (20, 4)] {
        let layout = BatchLayout::new(11, b, w).unwrap();
        let mut x = 0x1234_5678_u64;
        let (mut failed_sets, mut unplaced, trials) = (0u32, 0u32, 200_000u32);
        for _ in 0..trials {
            let slots: Vec<u64> = (0..10)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x % 1_000_000
                })
                .collect();
            let a = layout.assign(&slots);
            if !a.unplaced.is_empty() {
                failed_sets += 1;
                unplaced += a.unplaced.len() as u32;
            }
        }
        println!(
            "B={b} w={w}: {failed_sets} of {trials} sets of 10 left {unplaced} slots unplaced"
        );
    }
}
