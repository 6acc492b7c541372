//! A counter that many threads bump without sharing a cache line: the cache's hit counter must
//! not make every hit contend on one atomic.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

const STRIPES: usize = 16;

#[repr(align(64))]
#[derive(Default)]
struct Line(AtomicU64);

#[derive(Default)]
pub struct StripedCounter([Line; STRIPES]);

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's stripe: look it up once when adding to several counters.
#[derive(Clone, Copy)]
pub struct Stripe(usize);

impl Stripe {
    pub fn current() -> Stripe {
        Stripe(stripe_index())
    }
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

    /// As `add`, on a stripe looked up before.
    pub fn add_on(&self, stripe: Stripe, n: u64) {
        self.0[stripe.0].0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sum(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}
