//! Progress of long steps (unpacking, packing), reported to whoever the program installed:
//! a progress bar on a terminal, nothing otherwise. Steps call [`report`]; the library
//! never draws anything itself.

use std::sync::OnceLock;

/// Receives (what, bytes done, bytes total).
pub type Sink = Box<dyn Fn(&str, u64, u64) + Send + Sync>;

static SINK: OnceLock<Sink> = OnceLock::new();

/// Installs the process's progress sink (once; later calls are ignored).
pub fn install(sink: Sink) {
    let _ = SINK.set(sink);
}

/// Reports progress of `what`.
pub fn report(what: &str, done: u64, total: u64) {
    if let Some(s) = SINK.get() {
        s(what, done, total);
    }
}
