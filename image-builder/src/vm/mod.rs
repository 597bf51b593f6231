//! Development and test VMs from one [`VmSpec`]: printed as a bhyve command line or a
//! libvirt domain, or run with QEMU and driven over its serial console.

pub mod bhyve;
pub mod console;
pub mod libvirt;
pub mod probe;
pub mod qemu;
pub mod spec;

pub use console::{CommandOutput, Console, ConsoleError};
pub use qemu::{Accel, QemuVm, RunOptions};
pub use spec::{DirectBoot, Disk, DiskFormat, Firmware, FirmwareFiles, Network, Share, VmSpec};

use std::path::PathBuf;

/// What can go wrong describing or running a VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot read VM spec {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("VM spec {}: {message}", .path.display())]
    Parse { path: PathBuf, message: String },
    #[error("invalid VM spec: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("{backend} cannot express this spec: {reason}")]
    Unsupported {
        backend: &'static str,
        reason: String,
    },
    #[error("no UEFI firmware found (looked for {looked}); install OVMF or set firmware_files")]
    NoFirmware { looked: String },
    #[error(transparent)]
    Run(#[from] runner::RunError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("QEMU exited before its console came up ({status}){}", tail(.stderr))]
    EarlyExit { status: String, stderr: String },
    #[error(transparent)]
    Console(#[from] ConsoleError),
}

fn tail(s: &str) -> String {
    let t = s.trim();
    if t.is_empty() {
        String::new()
    } else {
        format!(": {t}")
    }
}
