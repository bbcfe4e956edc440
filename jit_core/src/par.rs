//! Two independent pieces of work on two threads, for jitd's snapshot builds (the lookup
//! index's name and id tables; the public file and the gates file): each change rebuilds
//! both, and on a host with several CPUs the second needs not wait for the first. Never used
//! on a module's path (no process that loads a module starts threads here).

/// Runs `a` on a scoped thread and `b` on this one, and returns both results. If no thread
/// can be started (resource limits), runs `a` here too: the same results, only later (hence
/// `Fn`: `a` is only borrowed by the thread). A panic in `a` is re-raised here, as if `a` had
/// run on this thread.
pub fn join<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: Fn() -> RA + Sync,
    RA: Send,
    B: FnOnce() -> RB,
{
    std::thread::scope(|s| {
        let spawned = std::thread::Builder::new()
            .name("jit-build".into())
            .spawn_scoped(s, &a);
        let rb = b();
        let ra = match spawned {
            Ok(h) => match h.join() {
                Ok(r) => r,
                Err(p) => std::panic::resume_unwind(p),
            },
            Err(_) => a(),
        };
        (ra, rb)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_results_come_back_in_order() {
        let v: Vec<u32> = (0..1000).collect();
        let (a, b) = super::join(|| v.iter().sum::<u32>(), || v.len());
        assert_eq!((a, b), (499_500, 1000));
    }

    #[test]
    #[should_panic(expected = "boom")]
    fn a_panic_on_the_other_thread_reaches_the_caller() {
        let _ = super::join(|| -> u32 { panic!("boom") }, || 1);
    }
}
