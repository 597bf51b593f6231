//! Does KVM really work here? A present /dev/kvm is not enough: on some hosts (nested or
//! restricted virtualisation) guests stall or die with KVM internal errors. The probe boots
//! a 512-byte boot sector that prints to the serial port and exits QEMU through the
//! isa-debug-exit device; only a quick, clean run counts as working.

use std::path::{Path, PathBuf};
use std::time::Duration;

use runner::{Cmd, Runner};

/// Exit status QEMU reports when the probe writes 0x10 to isa-debug-exit: (0x10 << 1) | 1.
const PROBE_EXIT: i32 = 33;
/// A working accelerator runs the probe in well under a second; one that needs longer
/// for twenty instructions is no use for a test guest either.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A real-mode boot sector: write "K\n" to COM1, write 0x10 to port 0xf4, halt.
fn boot_sector() -> Vec<u8> {
    let code: [u8; 18] = [
        0xBA, 0xF8, 0x03, // mov dx, 0x3f8
        0xB0, b'K', // mov al, 'K'
        0xEE, // out dx, al
        0xB0, b'\n', // mov al, '\n'
        0xEE,  // out dx, al
        0xBA, 0xF4, 0x00, // mov dx, 0xf4
        0xB0, 0x10, // mov al, 0x10
        0xEE, // out dx, al
        0xF4, // hlt
        0xEB, 0xFD, // jmp back to hlt
    ];
    let mut img = code.to_vec();
    img.resize(510, 0);
    img.extend_from_slice(&[0x55, 0xAA]);
    img
}

/// The probe command for `accel` (`kvm` or `tcg`) with the boot sector at `image`.
pub fn probe_command(qemu: &Path, accel: &str, image: &Path) -> Cmd {
    Cmd::new(qemu)
        .args(["-accel", accel])
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-machine", "pc", "-m", "16", "-serial", "stdio"])
        .args(["-monitor", "none"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=ide", image.display()))
        .timeout(PROBE_TIMEOUT)
        .tag("kvm-probe")
}

/// Runs the probe; `scratch` is a private directory for the boot sector.
pub fn accel_works(runner: &dyn Runner, qemu: &Path, accel: &str, scratch: &Path) -> bool {
    let image = scratch.join("probe.img");
    if let Err(e) = std::fs::write(&image, boot_sector()) {
        tracing::warn!("cannot write the accelerator probe: {e}");
        return false;
    }
    let verdict = match runner.output(&probe_command(qemu, accel, &image)) {
        Ok(out) => out.code == Some(PROBE_EXIT) && out.stdout.starts_with(b"K"),
        Err(e) => {
            tracing::debug!("{accel} probe: {e}");
            false
        }
    };
    let _ = std::fs::remove_file(&image);
    verdict
}

/// Where a verdict is remembered: keyed by the boot, since a reboot may change the answer.
pub fn cache_file(cache_dir: &Path) -> PathBuf {
    cache_dir.join("kvm-probe")
}

/// The remembered verdict for this boot, if any.
pub fn cached(cache_dir: &Path, boot_id: &str) -> Option<bool> {
    let text = std::fs::read_to_string(cache_file(cache_dir)).ok()?;
    let (id, verdict) = text.trim().split_once(' ')?;
    (id == boot_id).then_some(verdict == "works")
}

pub fn remember(cache_dir: &Path, boot_id: &str, works: bool) {
    let verdict = if works { "works" } else { "broken" };
    let _ = std::fs::create_dir_all(cache_dir);
    let tmp = cache_dir.join(format!("kvm-probe.{}", std::process::id()));
    if std::fs::write(&tmp, format!("{boot_id} {verdict}\n")).is_ok() {
        let _ = std::fs::rename(&tmp, cache_file(cache_dir));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runner::{Output, Recorder, Reply};

    #[test]
    fn boot_sector_is_bootable() {
        let b = boot_sector();
        assert_eq!(b.len(), 512);
        assert_eq!(&b[510..], &[0x55, 0xAA]);
    }

    #[test]
    fn verdict_needs_the_exit_code_and_the_serial_output() {
        let dir = tempfile::tempdir().unwrap();
        let q = Path::new("qemu-system-x86_64");
        let rec = Recorder::new();
        rec.on(
            "qemu-system-x86_64 -accel kvm",
            Output {
                code: Some(33),
                stdout: b"K\n".to_vec(),
                stderr: vec![],
            },
        );
        assert!(accel_works(&rec, q, "kvm", dir.path()));
        rec.on("qemu-system-x86_64 -accel kvm", Reply::Timeout);
        assert!(!accel_works(&rec, q, "kvm", dir.path()));
        rec.on(
            "qemu-system-x86_64 -accel kvm",
            Output::failed(1, "KVM internal error"),
        );
        assert!(!accel_works(&rec, q, "kvm", dir.path()));
        let lines = rec.lines();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].ends_with(&format!(
            "-device isa-debug-exit,iobase=0xf4,iosize=0x04 -drive file={}/probe.img,format=raw,if=ide",
            dir.path().display()
        )));
        assert!(!dir.path().join("probe.img").exists());
    }

    #[test]
    fn the_probe_runs_under_real_qemu_tcg() {
        let qemu = Path::new("/usr/bin/qemu-system-x86_64");
        if !qemu.exists() {
            eprintln!("skipped: {} not installed", qemu.display());
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(accel_works(
            &runner::SystemRunner::new(),
            qemu,
            "tcg",
            dir.path()
        ));
    }

    #[test]
    fn cache_is_per_boot() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(cached(dir.path(), "b1"), None);
        remember(dir.path(), "b1", false);
        assert_eq!(cached(dir.path(), "b1"), Some(false));
        assert_eq!(cached(dir.path(), "b2"), None);
        remember(dir.path(), "b2", true);
        assert_eq!(cached(dir.path(), "b2"), Some(true));
    }
}
