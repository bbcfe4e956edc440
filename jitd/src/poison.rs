//! One rule for jitd's mutexes: a thread that panicked while holding one does not take the
//! daemon down with it. What it guarded is used as it was left (each holder keeps its data
//! consistent between statements that can panic, and a teardown, a revocation or the monitor
//! must go on rather than stop for good), so a poisoned lock is taken as an unpoisoned one.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, also after a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
