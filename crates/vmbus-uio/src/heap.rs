//! Giving freed heap back to the system after devices close.
//!
//! A device's rings bookkeeping, receive backlog and scratch buffers are freed at close (or, from Node, when the
//! collector finalizes the last handle), but glibc keeps freed memory in its arenas, so a long-lived process that
//! opens and closes devices grows RSS without leaking anything (heaptrack finds nothing outstanding). One
//! `malloc_trim` per burst of closes, on a background thread 20 ms after the last, returns the free pages.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod trim {
    use std::sync::{Condvar, Mutex, OnceLock};
    use std::time::Duration;

    /// Quiet time after the last request before trimming (closes come in bursts; finalizers in batches).
    const DEBOUNCE: Duration = Duration::from_millis(20);

    pub struct Trimmer {
        asked: Mutex<bool>,
        cv: Condvar,
    }

    static TRIMMER: OnceLock<Option<&'static Trimmer>> = OnceLock::new();

    pub fn request() {
        let t = TRIMMER.get_or_init(|| {
            let t: &'static Trimmer = Box::leak(Box::new(Trimmer {
                asked: Mutex::new(false),
                cv: Condvar::new(),
            }));
            std::thread::Builder::new()
                .name("netvsc-trim".into())
                .spawn(move || t.run())
                .ok()
                .map(|_| t)
        });
        if let Some(t) = t {
            *t.asked.lock().unwrap_or_else(|p| p.into_inner()) = true;
            t.cv.notify_one();
        }
    }

    impl Trimmer {
        fn run(&self) {
            let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                while !*asked {
                    asked = self.cv.wait(asked).unwrap_or_else(|p| p.into_inner());
                }
                // Wait until requests stop for DEBOUNCE.
                while *asked {
                    *asked = false;
                    asked = self
                        .cv
                        .wait_timeout(asked, DEBOUNCE)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                drop(asked);
                // SAFETY: malloc_trim takes no pointer; it walks the allocator's own free lists under its locks.
                unsafe {
                    libc::malloc_trim(0);
                }
                asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
            }
        }
    }
}

/// Ask for freed heap to be returned to the system shortly (debounced, off the caller's thread). A no-op on C
/// libraries other than glibc, which return memory on their own.
pub fn release_free_heap_soon() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    trim::request();
}
