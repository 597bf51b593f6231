//! `image-builder vm --print`: the bhyve command, the libvirt domain and the QEMU command
//! for one spec, pinned by golden files (`UPDATE_GOLDEN=1` rewrites them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image_builder::vm::{bhyve, libvirt, DiskFormat, VmSpec};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-builder"))
        .arg("vm")
        .args(args)
        .current_dir(dir())
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run image-builder")
}

fn golden(name: &str, args: &[&str]) -> String {
    let o = run(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{args:?} failed: {err}");
    let got = String::from_utf8(o.stdout).expect("utf-8 output");
    let path = dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).expect("golden file");
    assert_eq!(
        got, want,
        "{name} differs; check the change, then UPDATE_GOLDEN=1"
    );
    got
}

const DEV: &[&str] = &["--spec", "dev.json", "--no-repo"];

#[test]
fn bhyve_command_for_illumos() {
    let mut args = DEV.to_vec();
    args.extend(["--print", "bhyve"]);
    let text = golden("dev.bhyve.golden", &args);
    // The printed command is one shell line once the continuations are joined.
    let joined = text.replace(" \\\n  ", " ");
    assert_eq!(joined.lines().count(), 1);
    let words: Vec<&str> = joined.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"/usr/sbin/bhyve"));
    assert_eq!(words.last(), Some(&"oi-dev"));
    // Every -s names a distinct slot.
    let slots: Vec<&str> = words
        .windows(2)
        .filter(|w| w[0] == "-s")
        .map(|w| w[1].split(',').next().unwrap())
        .collect();
    let mut uniq = slots.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(slots.len(), uniq.len(), "{slots:?}");
}

#[test]
fn libvirt_domain_is_well_formed_and_complete() {
    let mut args = DEV.to_vec();
    args.extend(["--net", "user", "--print", "libvirt"]);
    let xml = golden("dev.libvirt.golden.xml", &args);
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "domain");
    assert_eq!(root.attribute("type"), Some("kvm"));
    let fs: Vec<_> = root
        .descendants()
        .filter(|n| n.has_tag_name("filesystem"))
        .collect();
    assert_eq!(fs.len(), 2);
    let repo = fs[0];
    assert_eq!(repo.attribute("type"), Some("mount"));
    assert_eq!(repo.attribute("accessmode"), Some("passthrough"));
    let child = |n: roxmltree::Node, tag: &str, attr: &str| {
        n.children()
            .find(|c| c.has_tag_name(tag))
            .and_then(|c| c.attribute(attr).map(str::to_string))
    };
    assert_eq!(
        child(repo, "source", "dir").as_deref(),
        Some("/export/home/dev/installer")
    );
    assert_eq!(child(repo, "target", "dir").as_deref(), Some("repo"));
    assert!(fs[1].children().any(|c| c.has_tag_name("readonly")));
    let serial = root.descendants().find(|n| n.has_tag_name("serial"));
    let console = root.descendants().find(|n| n.has_tag_name("console"));
    assert_eq!(serial.and_then(|s| s.attribute("type")), Some("pty"));
    assert_eq!(
        console.and_then(|c| child(c, "target", "type")).as_deref(),
        Some("serial")
    );
}

#[test]
fn libvirt_escapes_and_boots_a_kernel() {
    let xml = golden(
        "kernel.libvirt.golden.xml",
        &[
            "--no-repo",
            "--name",
            "tiny",
            "--firmware",
            "bios",
            "-m",
            "512",
            "-c",
            "1",
            "--net",
            "none",
            "--share",
            "data=/srv/a&b's",
            "--kernel",
            "/boot/vmlinux",
            "--initrd",
            "/boot/initrd.img",
            "--append",
            "console=ttyS0 ib.9p=data:/data",
            "--accel",
            "tcg",
            "--print",
            "libvirt",
        ],
    );
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let src = doc
        .descendants()
        .find(|n| n.has_tag_name("source"))
        .and_then(|n| n.attribute("dir"));
    assert_eq!(src, Some("/srv/a&b's"));
    assert_eq!(doc.root_element().attribute("type"), Some("qemu"));
    assert!(doc.descendants().all(|n| !n.has_tag_name("loader")));
}

#[test]
fn qemu_command_escapes_commas_and_shares_over_9p() {
    let text = golden(
        "kernel.qemu.golden",
        &[
            "--no-repo",
            "--name",
            "tiny",
            "--firmware",
            "bios",
            "-m",
            "512",
            "-c",
            "1",
            "--net",
            "none",
            "--share",
            "data=/srv/a,b",
            "--kernel",
            "/boot/vmlinux",
            "--initrd",
            "/boot/initrd.img",
            "--append",
            "console=ttyS0 ib.9p=data:/data",
            "--snapshot",
            "--format",
            "qcow2",
            "/images/t.qcow2",
            "--print",
            "qemu",
        ],
    );
    assert!(text.contains("path=/srv/a,,b,security_model=none"));
    assert!(text.contains("-device virtio-9p-pci,fsdev=fs0,mount_tag=data"));
}

#[test]
fn bhyve_refuses_what_it_cannot_express() {
    let base = || VmSpec::load(&dir().join("dev.json")).unwrap();
    let mut s = base();
    s.disks[0].format = DiskFormat::Qcow2;
    let e = bhyve::command(&s).unwrap_err().to_string();
    assert!(e.contains("raw images only"), "{e}");

    let mut s = base();
    s.shares[0].path = "/export/a,b".into();
    let e = bhyve::command(&s).unwrap_err().to_string();
    assert!(e.contains("containing ','"), "{e}");

    let mut s = base();
    s.kernel = Some(image_builder::vm::DirectBoot {
        kernel: "/k".into(),
        initrd: None,
        cmdline: String::new(),
    });
    assert!(bhyve::command(&s).is_err());

    // libvirt has no illumos VNICs.
    assert!(libvirt::domain(&base(), "kvm").is_err());
}

#[test]
fn bios_guests_get_the_csm_rom_and_stdio_console() {
    let mut s = VmSpec::load(&dir().join("dev.json")).unwrap();
    s.firmware = image_builder::vm::Firmware::Bios;
    s.serial_socket = None;
    let a = bhyve::command(&s).unwrap();
    let pairs: Vec<String> = a.windows(2).map(|w| format!("{} {}", w[0], w[1])).collect();
    assert!(pairs.contains(&"-l com1,stdio".to_string()));
    assert!(pairs.contains(&format!("-l bootrom,{}", bhyve::CSM_ROM)));
}

#[test]
fn bad_flags_are_usage_errors_not_panics() {
    for args in [
        vec!["--no-repo", "--print", "bhyve"],
        vec![
            "--no-repo",
            "--share",
            "noequals",
            "x.raw",
            "--print",
            "spec",
        ],
        vec!["--no-repo", "--net", "bridge", "x.raw", "--print", "spec"],
        vec!["--no-repo", "--spec", "missing.json", "--print", "spec"],
    ] {
        let o = run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn the_repo_is_shared_by_default() {
    let o = run(&["x.raw", "--print", "spec"]);
    assert!(o.status.success());
    let spec: VmSpec = serde_json::from_slice(&o.stdout).unwrap();
    let repo = spec
        .shares
        .iter()
        .find(|s| s.tag == "repo")
        .expect("repo share");
    // The tests run inside the project's checkout, so that is what gets shared.
    assert!(repo.path.join(".git").exists(), "{}", repo.path.display());
    assert!(dir().starts_with(&repo.path));
}

#[test]
fn help_names_every_backend() {
    let o = run(&["--help"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for word in ["bhyve", "libvirt", "qemu", "--share", "--accel"] {
        assert!(text.contains(word), "help lacks {word}");
    }
}
