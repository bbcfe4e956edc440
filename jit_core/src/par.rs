//! A sequence of independent pieces of work made on two threads and used in order, for jitd's
//! snapshot builds: the lookup index's shards are built in batches by this thread and one
//! other, and written to the file one batch after another as they come, so the build uses both
//! CPUs of a small host while only a few batches are ever in memory (building both of the
//! index's tables whole, side by side, held every shard of the file at once). Never used on a
//! module's path (no process that loads a module starts threads here).

/// Makes items `0..n` with `make`, even ones on this thread and odd ones on a scoped thread
/// running ahead by at most one item, and hands each to `take` in order. Stops at the first
/// error of `take` (the other thread then stops at its next item). If no thread can be started
/// (resource limits), makes every item here: the same items in the same order, only later. A
/// panic in `make` on the other thread is re-raised here, as if it had run on this thread.
///
/// # Errors
/// The first error `take` returns.
pub fn in_order<T, E>(
    n: usize,
    make: impl Fn(usize) -> T + Sync,
    mut take: impl FnMut(T) -> Result<(), E>,
) -> Result<(), E>
where
    T: Send,
{
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<T>(1);
        let make = &make;
        let other = std::thread::Builder::new()
            .name("jit-build".into())
            .spawn_scoped(s, move || {
                for i in (1..n).step_by(2) {
                    if tx.send(make(i)).is_err() {
                        return; // the taker stopped
                    }
                }
            });
        let Ok(other) = other else {
            return (0..n).try_for_each(|i| take(make(i)));
        };
        let mut result = Ok(());
        for i in 0..n {
            let item = if i % 2 == 0 {
                make(i)
            } else {
                match rx.recv() {
                    Ok(item) => item,
                    Err(_) => break, // the other thread panicked: re-raised below
                }
            };
            result = take(item);
            if result.is_err() {
                break;
            }
        }
        drop(rx);
        if let Err(p) = other.join() {
            std::panic::resume_unwind(p);
        }
        result
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_item_comes_in_order() {
        for n in [0, 1, 2, 3, 10, 101] {
            let mut got = Vec::new();
            let r: Result<(), ()> = super::in_order(
                n,
                |i| i * i,
                |v| {
                    got.push(v);
                    Ok(())
                },
            );
            assert_eq!(r, Ok(()));
            assert_eq!(got, (0..n).map(|i| i * i).collect::<Vec<_>>(), "n = {n}");
        }
    }

    /// An error stops the sequence: nothing after it is taken, and the other thread stops
    /// early instead of making every remaining item.
    #[test]
    fn an_error_stops_both_threads() {
        let made = AtomicUsize::new(0);
        let mut taken = 0;
        let r = super::in_order(
            10_000,
            |i| {
                made.fetch_add(1, Ordering::Relaxed);
                i
            },
            |v| {
                taken += 1;
                if v == 5 {
                    Err(v)
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(r, Err(5));
        assert_eq!(taken, 6);
        assert!(made.load(Ordering::Relaxed) < 20, "{made:?}");
    }

    #[test]
    #[should_panic(expected = "boom")]
    fn a_panic_on_the_other_thread_reaches_the_caller() {
        let _ = super::in_order(
            4,
            |i| {
                if i == 3 {
                    panic!("boom")
                }
                i
            },
            |_| Ok::<(), ()>(()),
        );
    }
}
