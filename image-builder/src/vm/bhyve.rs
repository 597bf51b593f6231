//! The illumos bhyve(8) command line for a spec.
//!
//! illumos traps: the VM instance outlives the bhyve process unless `-D` (destroy on
//! power-off) is given; `-H` keeps an idle guest from spinning a host CPU; firmware lives
//! in /usr/share/bhyve/firmware (BHYVE_UEFI.fd, or BHYVE_CSM.fd for BIOS guests); option
//! values are split on ',' with no escape, so a path holding a comma cannot be passed.

use std::path::{Path, PathBuf};

use super::spec::{DiskFormat, Firmware, Network, VmSpec};
use super::VmError;

pub const BHYVE: &str = "/usr/sbin/bhyve";
pub const UEFI_ROM: &str = "/usr/share/bhyve/firmware/BHYVE_UEFI.fd";
pub const CSM_ROM: &str = "/usr/share/bhyve/firmware/BHYVE_CSM.fd";

/// PCI slots 0 (host bridge) and 1 (LPC) are fixed; devices take 2..=29.
const FIRST_SLOT: u32 = 2;
const LAST_SLOT: u32 = 29;

/// The bhyve arguments (program first) that run `spec` on illumos.
pub fn command(spec: &VmSpec) -> Result<Vec<String>, VmError> {
    spec.validate()?;
    if spec.kernel.is_some() {
        return unsupported("bhyve boots from firmware only; drop `kernel` or use QEMU");
    }
    let mut a: Vec<String> = vec![
        BHYVE.into(),
        "-c".into(),
        spec.cpus.to_string(),
        "-m".into(),
        format!("{}M", spec.memory_mib),
        "-H".into(),
        "-w".into(),
        "-D".into(),
        "-s".into(),
        "0,hostbridge".into(),
        "-s".into(),
        "1,lpc".into(),
    ];
    let mut slot = FIRST_SLOT;
    let mut device = |a: &mut Vec<String>, what: String| -> Result<(), VmError> {
        if slot > LAST_SLOT {
            return unsupported("more devices than free PCI slots");
        }
        a.push("-s".into());
        a.push(format!("{slot},{what}"));
        slot += 1;
        Ok(())
    };
    for d in &spec.disks {
        if d.format != DiskFormat::Raw {
            return unsupported(&format!(
                "{}: bhyve reads raw images only (convert with `qemu-img convert -O raw`)",
                d.path.display()
            ));
        }
        let mut v = format!("virtio-blk,{}", value(&d.path)?);
        if d.readonly {
            v.push_str(",ro");
        }
        device(&mut a, v)?;
    }
    match &spec.network {
        Network::None => {}
        Network::Vnic(vnic) => device(&mut a, format!("virtio-net-viona,vnic={vnic}"))?,
        Network::User => tracing::warn!(
            "bhyve has no user-mode network; the command has no NIC (set network to a vnic)"
        ),
    }
    for s in &spec.shares {
        let mut v = format!("virtio-9p,{}={}", s.tag, value(&s.path)?);
        if s.readonly {
            v.push_str(",ro");
        }
        device(&mut a, v)?;
    }
    a.push("-l".into());
    a.push(match &spec.serial_socket {
        Some(p) => format!("com1,socket,{}", value(p)?),
        None => "com1,stdio".into(),
    });
    let rom = spec
        .firmware_files
        .bhyve_bootrom
        .clone()
        .unwrap_or_else(|| {
            PathBuf::from(match spec.firmware {
                Firmware::Uefi => UEFI_ROM,
                Firmware::Bios => CSM_ROM,
            })
        });
    a.push("-l".into());
    a.push(format!("bootrom,{}", value(&rom)?));
    a.push(spec.name.clone());
    Ok(a)
}

/// The command as a shell line, one option per line for reading and copying.
pub fn render(args: &[String]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < args.len() {
        if i > 0 {
            out.push_str(" \\\n  ");
        }
        out.push_str(&quote(&args[i]));
        // Keep each flag on one line with its value.
        if args[i].starts_with('-') && i + 1 < args.len() && flag_takes_value(&args[i]) {
            out.push(' ');
            out.push_str(&quote(&args[i + 1]));
            i += 1;
        }
        i += 1;
    }
    out.push('\n');
    out
}

fn flag_takes_value(flag: &str) -> bool {
    matches!(flag, "-c" | "-m" | "-s" | "-l" | "-U" | "-B" | "-o")
}

fn value(p: &Path) -> Result<String, VmError> {
    let s = p.to_str().ok_or_else(|| VmError::Unsupported {
        backend: "bhyve",
        reason: format!("{}: not UTF-8", p.display()),
    })?;
    if s.contains(',') {
        return unsupported(&format!("{s}: bhyve cannot pass a path containing ','"));
    }
    Ok(s.to_string())
}

fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn unsupported<T>(reason: &str) -> Result<T, VmError> {
    Err(VmError::Unsupported {
        backend: "bhyve",
        reason: reason.to_string(),
    })
}
