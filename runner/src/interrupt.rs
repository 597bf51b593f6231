//! A process-wide interrupt request: once set (by the signal handlers [`install`] puts in
//! place, or by [`request`]), every running command's process group is killed and no new
//! command starts, so a build unwinds through its cleanup instead of waiting for a long
//! `pkg install`.
//!
//! Cleanup runs inside a [`cleanup`] scope: commands that thread runs are neither refused
//! nor killed, however many signals arrive, so cleanup runs to its end. The only way out
//! is the force-quit: the [`FORCE_QUIT_AFTER`]th signal ends the process at once with
//! status 130, leaving whatever cleanup had not undone yet (the build journal keeps it for
//! `image-builder clean`). SIGQUIT keeps its default action and also ends the process at
//! once.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;

/// The signal count that ends the process without waiting for cleanup.
pub const FORCE_QUIT_AFTER: usize = 3;

/// The exit status of a force-quit (128 + SIGINT, as shells report an interrupt).
pub const FORCE_QUIT_STATUS: i32 = 130;

fn cell() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static CLEANUP_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// The flag a signal handler sets.
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

/// Clears the request.
pub fn clear() {
    cell().store(false, Ordering::SeqCst);
}

/// How many of SIGINT, SIGTERM and SIGHUP arrived since [`install`].
pub fn signals() -> usize {
    SIGNALS.load(Ordering::SeqCst)
}

/// While the returned guard lives, commands this thread runs are neither refused nor
/// killed by an interrupt: cleanup code holds one so that it runs to its end.
#[must_use = "the scope ends when the guard is dropped"]
pub fn cleanup() -> CleanupScope {
    CLEANUP_DEPTH.with(|d| d.set(d.get() + 1));
    CleanupScope {
        _not_send: std::marker::PhantomData,
    }
}

/// See [`cleanup`].
pub struct CleanupScope {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for CleanupScope {
    fn drop(&mut self) {
        CLEANUP_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Whether this thread is inside a [`cleanup`] scope.
pub fn in_cleanup() -> bool {
    CLEANUP_DEPTH.with(|d| d.get() > 0)
}

/// Whether commands run by this thread must stop now.
pub(crate) fn stops_commands() -> bool {
    requested() && !in_cleanup()
}

/// Makes SIGINT, SIGTERM and SIGHUP (a closed terminal or ssh session) interrupt: the
/// first sets the request, and the [`FORCE_QUIT_AFTER`]th ends the process at once. Each
/// is announced on standard error. Calling it again does nothing.
pub fn install() -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                on_signal(sig);
            }
        })?;
    let _ = INSTALLED.set(());
    Ok(())
}

fn on_signal(sig: i32) {
    let name = match sig {
        signal_hook::consts::SIGINT => "SIGINT",
        signal_hook::consts::SIGTERM => "SIGTERM",
        signal_hook::consts::SIGHUP => "SIGHUP",
        _ => "signal",
    };
    let n = SIGNALS.fetch_add(1, Ordering::SeqCst) + 1;
    if n >= FORCE_QUIT_AFTER {
        eprintln!("{name}: quitting now, without finishing cleanup");
        std::process::exit(FORCE_QUIT_STATUS);
    }
    request();
    let left = FORCE_QUIT_AFTER - n;
    if n == 1 {
        eprintln!(
            "{name}: interrupting; cleanup runs to its end ({left} more signals quit without it)"
        );
    } else {
        eprintln!("{name}: cleanup is still running; {left} more signal quits without it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cleanup_scope_is_per_thread_and_nests() {
        assert!(!in_cleanup());
        let a = cleanup();
        let b = cleanup();
        assert!(in_cleanup());
        std::thread::spawn(|| assert!(!in_cleanup()))
            .join()
            .unwrap();
        drop(b);
        assert!(in_cleanup());
        drop(a);
        assert!(!in_cleanup());
    }
}
