//! A counter that many threads bump without sharing a cache line: the cache's hit counter must
//! not make every hit contend on one atomic.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

const STRIPES: usize = 16;

#[repr(align(64))]
#[derive(Default)]
struct Stripe(AtomicU64);

#[derive(Default)]
pub struct StripedCounter([Stripe; STRIPES]);

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn stripe_index() -> usize {
    STRIPE.with(|s| {
        if s.get() == usize::MAX {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            s.set(NEXT.fetch_add(1, Ordering::Relaxed) as usize % STRIPES);
        }
        s.get()
    })
}

impl StripedCounter {
    pub fn add(&self, n: u64) {
        self.0[stripe_index()].0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sum(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}
