//! A libvirt domain (XML) for a spec, for `virsh define` on a QEMU/KVM host.

use std::fmt::Write as _;
use std::path::Path;

use super::spec::{Firmware, Network, VmSpec};
use super::VmError;

/// Default OVMF code image named in the domain when the spec gives none (Debian's).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";

/// The domain XML. `domain_type` is `kvm` for hardware acceleration, `qemu` for TCG.
pub fn domain(spec: &VmSpec, domain_type: &str) -> Result<String, VmError> {
    spec.validate()?;
    let mut x = String::new();
    let w = &mut x;
    line(w, 0, &format!("<domain type='{}'>", esc(domain_type)));
    line(w, 1, &format!("<name>{}</name>", esc(&spec.name)));
    line(
        w,
        1,
        &format!(
            "<memory unit='KiB'>{}</memory>",
            u64::from(spec.memory_mib) * 1024
        ),
    );
    line(
        w,
        1,
        &format!("<vcpu placement='static'>{}</vcpu>", spec.cpus),
    );
    line(w, 1, "<os>");
    line(w, 2, "<type arch='x86_64' machine='q35'>hvm</type>");
    if spec.firmware == Firmware::Uefi {
        let code = match &spec.firmware_files.ovmf_code {
            Some(p) => path(p)?,
            None => OVMF_CODE.to_string(),
        };
        line(
            w,
            2,
            &format!(
                "<loader readonly='yes' type='pflash'>{}</loader>",
                esc(&code)
            ),
        );
        if let Some(vars) = &spec.firmware_files.ovmf_vars {
            line(w, 2, &format!("<nvram template='{}'/>", esc(&path(vars)?)));
        }
    }
    if let Some(k) = &spec.kernel {
        line(
            w,
            2,
            &format!("<kernel>{}</kernel>", esc(&path(&k.kernel)?)),
        );
        if let Some(i) = &k.initrd {
            line(w, 2, &format!("<initrd>{}</initrd>", esc(&path(i)?)));
        }
        line(w, 2, &format!("<cmdline>{}</cmdline>", esc(&k.cmdline)));
    } else {
        line(w, 2, "<boot dev='hd'/>");
    }
    line(w, 1, "</os>");
    line(w, 1, "<features>");
    line(w, 2, "<acpi/>");
    line(w, 1, "</features>");
    line(w, 1, "<on_reboot>destroy</on_reboot>");
    line(w, 1, "<devices>");
    for (i, d) in spec.disks.iter().enumerate() {
        // A device node (a zvol, a partition) is a block disk to libvirt, not a file.
        let (kind, attr) = if d.path.starts_with("/dev") {
            ("block", "dev")
        } else {
            ("file", "file")
        };
        line(w, 2, &format!("<disk type='{kind}' device='disk'>"));
        line(
            w,
            3,
            &format!("<driver name='qemu' type='{}'/>", d.format.as_str()),
        );
        line(
            w,
            3,
            &format!("<source {attr}='{}'/>", esc(&path(&d.path)?)),
        );
        line(
            w,
            3,
            &format!("<target dev='vd{}' bus='virtio'/>", disk_letter(i)),
        );
        if d.readonly {
            line(w, 3, "<readonly/>");
        }
        line(w, 2, "</disk>");
    }
    for s in &spec.shares {
        line(w, 2, "<filesystem type='mount' accessmode='passthrough'>");
        line(w, 3, &format!("<source dir='{}'/>", esc(&path(&s.path)?)));
        line(w, 3, &format!("<target dir='{}'/>", esc(&s.tag)));
        if s.readonly {
            line(w, 3, "<readonly/>");
        }
        line(w, 2, "</filesystem>");
    }
    match &spec.network {
        Network::None => {}
        Network::User => {
            line(w, 2, "<interface type='user'>");
            line(w, 3, "<model type='virtio'/>");
            line(w, 2, "</interface>");
        }
        Network::Vnic(v) => {
            return Err(VmError::Unsupported {
                backend: "libvirt",
                reason: format!("vnic {v:?} is an illumos link; use network \"user\""),
            })
        }
    }
    line(w, 2, "<serial type='pty'>");
    line(w, 3, "<target port='0'/>");
    line(w, 2, "</serial>");
    line(w, 2, "<console type='pty'>");
    line(w, 3, "<target type='serial' port='0'/>");
    line(w, 2, "</console>");
    line(w, 1, "</devices>");
    line(w, 0, "</domain>");
    Ok(x)
}

fn line(out: &mut String, depth: usize, text: &str) {
    let _ = writeln!(out, "{:width$}{text}", "", width = depth * 2);
}

/// vda..vdz, then vdaa...
fn disk_letter(i: usize) -> String {
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    if i < 26 {
        (letters[i] as char).to_string()
    } else {
        format!(
            "{}{}",
            letters[(i / 26 - 1) % 26] as char,
            letters[i % 26] as char
        )
    }
}

fn path(p: &Path) -> Result<String, VmError> {
    p.to_str()
        .map(str::to_string)
        .ok_or_else(|| VmError::Unsupported {
            backend: "libvirt",
            reason: format!("{}: not UTF-8", p.display()),
        })
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\'' => o.push_str("&apos;"),
            '"' => o.push_str("&quot;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_letters() {
        assert_eq!(disk_letter(0), "a");
        assert_eq!(disk_letter(25), "z");
        assert_eq!(disk_letter(26), "aa");
        assert_eq!(disk_letter(27), "ab");
    }

    #[test]
    fn escaping() {
        assert_eq!(esc("a&b<'\">"), "a&amp;b&lt;&apos;&quot;&gt;");
    }
}
