//! The VM description every backend (bhyve, libvirt, QEMU) is generated from.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::VmError;

/// One virtual machine: what it boots, what it sees, how big it is.
///
/// Read from JSON (`image-builder vm --spec FILE`), then adjusted by command-line flags.
/// Relative paths in a file are relative to the file's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VmSpec {
    /// Guest name (bhyve's vmname, libvirt's domain name): letters, digits, `-`, `_`.
    pub name: String,
    pub memory_mib: u32,
    pub cpus: u32,
    pub firmware: Firmware,
    /// Firmware image overrides; each backend has its own default location.
    pub firmware_files: FirmwareFiles,
    pub disks: Vec<Disk>,
    pub shares: Vec<Share>,
    pub network: Network,
    /// Where bhyve's com1 goes: a Unix socket path, or bhyve's own stdio when unset.
    /// QEMU runs always use a per-run socket; libvirt uses a pty.
    pub serial_socket: Option<PathBuf>,
    /// Boot a kernel directly (QEMU and libvirt; bhyve has no such loader).
    pub kernel: Option<DirectBoot>,
}

impl Default for VmSpec {
    fn default() -> Self {
        VmSpec {
            name: "ib-dev".into(),
            memory_mib: 2048,
            cpus: 2,
            firmware: Firmware::Uefi,
            firmware_files: FirmwareFiles::default(),
            disks: Vec::new(),
            shares: Vec::new(),
            network: Network::User,
            serial_socket: None,
            kernel: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    Uefi,
    Bios,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirmwareFiles {
    /// OVMF code image for QEMU and libvirt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ovmf_code: Option<PathBuf>,
    /// OVMF variable-store template; QEMU runs use a private copy of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ovmf_vars: Option<PathBuf>,
    /// bhyve boot ROM (illumos: /usr/share/bhyve/firmware/BHYVE_UEFI.fd or BHYVE_CSM.fd).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bhyve_bootrom: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    pub path: PathBuf,
    #[serde(default)]
    pub format: DiskFormat,
    /// QEMU only: writes go to a throw-away overlay, the image is never modified.
    #[serde(default, skip_serializing_if = "is_false")]
    pub snapshot: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub readonly: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    #[default]
    Raw,
    Qcow2,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// A host directory the guest mounts over virtio-9p by its tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    pub tag: String,
    pub path: PathBuf,
    #[serde(default, skip_serializing_if = "is_false")]
    pub readonly: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// No network device.
    None,
    /// User-mode NAT (QEMU's slirp; libvirt's `type='user'`). bhyve has no equivalent.
    User,
    /// An illumos VNIC, for bhyve's virtio-net-viona.
    Vnic(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectBoot {
    pub kernel: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<PathBuf>,
    #[serde(default)]
    pub cmdline: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The longest 9P tag we accept: QEMU and Linux allow more, but illumos' vio9p and bhyve's
/// share names are best kept short and plain.
const MAX_TAG: usize = 31;

impl VmSpec {
    /// Reads a JSON spec; relative paths are taken against the file's directory.
    pub fn load(path: &Path) -> Result<VmSpec, VmError> {
        let text = std::fs::read_to_string(path).map_err(|source| VmError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut spec: VmSpec = serde_json::from_str(&text).map_err(|e| VmError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        spec.resolve_paths(base);
        Ok(spec)
    }

    /// Makes every relative path in the spec absolute against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.disks.iter_mut().for_each(|d| fix(&mut d.path));
        self.shares.iter_mut().for_each(|s| fix(&mut s.path));
        if let Some(k) = &mut self.kernel {
            fix(&mut k.kernel);
            if let Some(i) = &mut k.initrd {
                fix(i);
            }
        }
        let f = &mut self.firmware_files;
        for p in [&mut f.ovmf_code, &mut f.ovmf_vars, &mut f.bhyve_bootrom]
            .into_iter()
            .flatten()
        {
            fix(p);
        }
        if let Some(s) = &mut self.serial_socket {
            fix(s);
        }
    }

    /// Adds a share, replacing one with the same tag.
    pub fn set_share(&mut self, share: Share) {
        self.shares.retain(|s| s.tag != share.tag);
        self.shares.push(share);
    }

    /// Checks what every backend relies on; returns every problem, not just the first.
    pub fn validate(&self) -> Result<(), VmError> {
        let mut problems = Vec::new();
        if !valid_word(&self.name, 64) {
            problems.push(format!(
                "name {:?}: use 1-64 letters, digits, '-' or '_'",
                self.name
            ));
        }
        if self.memory_mib < 64 {
            problems.push(format!("memory_mib {}: at least 64 MiB", self.memory_mib));
        }
        if !(1..=32).contains(&self.cpus) {
            problems.push(format!("cpus {}: 1 to 32 (bhyve's limit)", self.cpus));
        }
        let mut tags = HashSet::new();
        for s in &self.shares {
            if !valid_word(&s.tag, MAX_TAG) {
                problems.push(format!(
                    "share tag {:?}: use 1-{MAX_TAG} letters, digits, '-' or '_'",
                    s.tag
                ));
            }
            if !tags.insert(&s.tag) {
                problems.push(format!("share tag {:?} is used twice", s.tag));
            }
        }
        if let Network::Vnic(v) = &self.network {
            if !valid_word(v, 31) {
                problems.push(format!("vnic {v:?}: not a link name"));
            }
        }
        if self.disks.is_empty() && self.kernel.is_none() {
            problems.push("nothing to boot: give a disk image or a kernel".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(VmError::Invalid(problems))
        }
    }
}

fn valid_word(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_paths_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("vm.json");
        std::fs::write(
            &f,
            r#"{"name":"t1","memory_mib":512,"cpus":1,"firmware":"bios",
                "disks":[{"path":"disk.raw"}],
                "shares":[{"tag":"repo","path":"/src","readonly":true}],
                "network":{"vnic":"vnic0"}}"#,
        )
        .unwrap();
        let s = VmSpec::load(&f).unwrap();
        assert_eq!(s.disks[0].path, dir.path().join("disk.raw"));
        assert_eq!(s.disks[0].format, DiskFormat::Raw);
        assert_eq!(s.shares[0].path, Path::new("/src"));
        assert_eq!(s.network, Network::Vnic("vnic0".into()));
        assert_eq!(s.firmware, Firmware::Bios);
        s.validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("vm.json");
        std::fs::write(&f, r#"{"memory":512}"#).unwrap();
        let e = VmSpec::load(&f).unwrap_err().to_string();
        assert!(
            e.contains("vm.json") && e.contains("unknown field `memory`"),
            "{e}"
        );
    }

    #[test]
    fn validation_reports_every_problem() {
        let s = VmSpec {
            name: "bad name".into(),
            memory_mib: 8,
            cpus: 0,
            shares: vec![
                Share {
                    tag: "repo".into(),
                    path: "/a".into(),
                    readonly: false,
                },
                Share {
                    tag: "repo".into(),
                    path: "/b".into(),
                    readonly: false,
                },
                Share {
                    tag: "a,b".into(),
                    path: "/c".into(),
                    readonly: false,
                },
            ],
            ..VmSpec::default()
        };
        let VmError::Invalid(p) = s.validate().unwrap_err() else {
            panic!("expected Invalid")
        };
        assert_eq!(p.len(), 6, "{p:#?}");
        assert!(p.iter().any(|m| m.contains("used twice")));
        assert!(p.iter().any(|m| m.contains("nothing to boot")));
    }

    #[test]
    fn set_share_replaces_by_tag() {
        let mut s = VmSpec::default();
        for p in ["/a", "/b"] {
            s.set_share(Share {
                tag: "repo".into(),
                path: p.into(),
                readonly: false,
            });
        }
        assert_eq!(s.shares.len(), 1);
        assert_eq!(s.shares[0].path, Path::new("/b"));
    }

    #[test]
    fn json_round_trip() {
        let s = VmSpec {
            kernel: Some(DirectBoot {
                kernel: "/k".into(),
                initrd: Some("/i".into()),
                cmdline: "console=ttyS0".into(),
            }),
            ..VmSpec::default()
        };
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<VmSpec>(&text).unwrap(), s);
    }
}
