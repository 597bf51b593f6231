//! A process-wide interrupt request: once set (by a SIGINT/SIGTERM handler the program
//! installs), every running command's process group is killed and no new command starts,
//! so a build unwinds through its cleanup instead of waiting for a long `pkg install`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;

fn cell() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// The flag a signal handler sets (e.g. with `signal_hook::flag::register`).
pub fn flag() -> Arc<AtomicBool> {
    cell().clone()
}

/// Asks every running and future command to stop.
pub fn request() {
    cell().store(true, Ordering::SeqCst);
}

/// Whether an interrupt was requested.
pub fn requested() -> bool {
    cell().load(Ordering::SeqCst)
}

/// Clears the request (cleanup code runs its own commands after an interrupt).
pub fn clear() {
    cell().store(false, Ordering::SeqCst);
}
