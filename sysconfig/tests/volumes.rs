//! NoCloud and config-drive volumes built with the real tools (mkfs.vfat + mcopy,
//! xorriso or genisoimage), read back in userland.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use sysconfig::rootfs::Root;
use sysconfig::sources::{configdrive, nocloud};

fn have(tool: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists())
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const META: &str = "instance-id: iid-vol-1\nlocal-hostname: volhost.example\n";
const USER: &str = "#cloud-config\nusers:\n  - name: ann\n    ssh_authorized_keys: [ssh-ed25519 AAAA ann]\nwrite_files:\n  - path: /etc/motd\n    content: |\n      hello from cidata\n";
const NET: &str = "version: 2\nethernets:\n  nic0:\n    match: {macaddress: '52:54:00:00:00:01'}\n    dhcp4: true\n";

fn seed_dir(t: &Path) -> PathBuf {
    let d = t.join("seed");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("meta-data"), META).unwrap();
    std::fs::write(d.join("user-data"), USER).unwrap();
    std::fs::write(d.join("network-config"), NET).unwrap();
    d
}

fn check(found: Option<sysconfig::sources::Found>) {
    let f = found.expect("the labelled volume is found");
    assert_eq!(f.instance_id.as_deref(), Some("iid-vol-1"));
    assert_eq!(f.desired["hostname"], "volhost");
    assert_eq!(
        f.desired["users"][0]["ssh_authorized_keys"],
        json!(["ssh-ed25519 AAAA ann"])
    );
    assert_eq!(f.desired["files"][0]["content"], "hello from cidata\n");
    assert_eq!(
        f.desired["network"]["interfaces"][0],
        json!({"id":"nic0","mac":"52:54:00:00:00:01","addresses":[{"kind":"dhcp"}]})
    );
}

fn fat_image(t: &Path, label: &str, fat32: bool) -> Option<PathBuf> {
    if !have("mkfs.vfat") || !have("mcopy") {
        eprintln!("SKIPPED: mkfs.vfat or mcopy missing (apt-get install dosfstools mtools)");
        return None;
    }
    let img = t.join(format!("{label}-{fat32}.img"));
    let size = if fat32 { 40 * 1024 * 1024 } else { 1440 * 1024 };
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    let mut mk = Command::new("mkfs.vfat");
    if fat32 {
        mk.args(["-F", "32"]);
    }
    run(mk
        .args(["-n", label])
        .arg(&img)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"));
    let seed = seed_dir(t);
    for f in ["meta-data", "user-data", "network-config"] {
        run(Command::new("mcopy")
            .arg("-i")
            .arg(&img)
            .arg(seed.join(f))
            .arg(format!("::{f}"))
            .env("MTOOLS_SKIP_CHECK", "1"));
    }
    Some(img)
}

fn iso_image(t: &Path, label: &str, tree: &Path) -> Option<PathBuf> {
    iso_image_with(t, label, tree, &["-J", "-R"])
}

fn iso_image_with(t: &Path, label: &str, tree: &Path, names: &[&str]) -> Option<PathBuf> {
    let img = t.join(format!("{label}.iso"));
    let mut cmd = if have("xorriso") {
        let mut c = Command::new("xorriso");
        c.args(["-as", "mkisofs"]);
        c
    } else if have("genisoimage") {
        Command::new("genisoimage")
    } else {
        eprintln!(
            "SKIPPED: neither xorriso nor genisoimage is installed (apt-get install xorriso)"
        );
        return None;
    };
    run(cmd
        .arg("-quiet")
        .args(names)
        .args(["-V", label, "-o"])
        .arg(&img)
        .arg(tree));
    Some(img)
}

#[test]
fn nocloud_from_a_fat12_volume_labelled_cidata() {
    let t = tempfile::tempdir().unwrap();
    let Some(img) = fat_image(t.path(), "cidata", false) else {
        return;
    };
    check(
        nocloud::read(
            &Root::new(t.path().join("root")),
            Path::new("/none"),
            &[img],
        )
        .unwrap(),
    );
}

#[test]
fn nocloud_from_a_fat32_volume() {
    let t = tempfile::tempdir().unwrap();
    let Some(img) = fat_image(t.path(), "CIDATA", true) else {
        return;
    };
    check(
        nocloud::read(
            &Root::new(t.path().join("root")),
            Path::new("/none"),
            &[img],
        )
        .unwrap(),
    );
}

#[test]
fn nocloud_from_an_iso9660_volume_and_other_labels_are_ignored() {
    let t = tempfile::tempdir().unwrap();
    let seed = seed_dir(t.path());
    let Some(other) = iso_image(t.path(), "notcidata", &seed) else {
        return;
    };
    let Some(img) = iso_image(t.path(), "cidata", &seed) else {
        return;
    };
    let root = Root::new(t.path().join("root"));
    assert!(
        nocloud::read(&root, Path::new("/none"), std::slice::from_ref(&other))
            .unwrap()
            .is_none()
    );
    check(nocloud::read(&root, Path::new("/none"), &[other, img]).unwrap());
}

#[test]
fn devices_directory_is_scanned_for_whole_disk_entries() {
    let t = tempfile::tempdir().unwrap();
    let Some(img) = fat_image(t.path(), "cidata", false) else {
        return;
    };
    let dsk = t.path().join("dsk");
    std::fs::create_dir_all(&dsk).unwrap();
    std::fs::write(dsk.join("c0t0d0p0"), vec![0u8; 4096]).unwrap();
    std::fs::rename(&img, dsk.join("c1t0d0p0")).unwrap();
    check(
        nocloud::read(
            &Root::new(t.path().join("root")),
            Path::new("/none"),
            &[dsk],
        )
        .unwrap(),
    );
}

#[test]
fn openstack_config_drive_iso() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("cd");
    let latest = tree.join("openstack/latest");
    std::fs::create_dir_all(&latest).unwrap();
    std::fs::write(
        latest.join("meta_data.json"),
        r#"{"uuid":"os-uuid-1","hostname":"cd1","public_keys":{"k":"ssh-ed25519 CCCC k"}}"#,
    )
    .unwrap();
    std::fs::write(
        latest.join("user_data"),
        "#cloud-config\ntimezone: Europe/Zurich\n",
    )
    .unwrap();
    let Some(img) = iso_image(t.path(), "config-2", &tree) else {
        return;
    };
    let f = configdrive::read(&[img]).unwrap().unwrap();
    assert_eq!(f.instance_id.as_deref(), Some("os-uuid-1"));
    assert_eq!(
        Value::Object(f.desired),
        json!({"timezone":"Europe/Zurich","hostname":"cd1","users":[{"name":"root","ssh_authorized_keys":["ssh-ed25519 CCCC k"]}]})
    );
}

#[test]
fn malformed_metadata_on_a_volume_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("bad");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("meta-data"), "instance-id: [broken\n").unwrap();
    let Some(img) = iso_image(t.path(), "cidata", &tree) else {
        return;
    };
    let err = nocloud::read(&Root::new(t.path()), Path::new("/none"), &[img])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("source nocloud: meta-data: line 2 column 1:"),
        "{err}"
    );
}

#[test]
fn nocloud_from_an_iso_with_rock_ridge_names_only() {
    let t = tempfile::tempdir().unwrap();
    let seed = seed_dir(t.path());
    let Some(img) = iso_image_with(t.path(), "cidata", &seed, &["-R"]) else {
        return;
    };
    check(
        nocloud::read(
            &Root::new(t.path().join("root")),
            Path::new("/none"),
            &[img],
        )
        .unwrap(),
    );
}

#[test]
fn first_boot_from_a_cidata_disk_end_to_end() {
    use sysconfig::config::{Config, SourceKind};
    use sysconfig::daemon::{self, Mode, Options};
    let t = tempfile::tempdir().unwrap();
    let Some(img) = fat_image(t.path(), "cidata", false) else {
        return;
    };
    let root = t.path().join("root");
    std::fs::create_dir_all(root.join("etc/inet")).unwrap();
    // ann exists already (as whoever runs the test, so her keys can be given to her).
    let (uid, gid) = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    std::fs::write(
        root.join("etc/passwd"),
        format!("ann:x:{uid}:{gid}::/export/home/ann:/bin/sh\n"),
    )
    .unwrap();
    // As illumos ships it; cloud-init's default lock_passwd turns ann's password login off.
    std::fs::write(root.join("etc/shadow"), "ann:*LK*:::::::\n").unwrap();
    let mut cfg = Config::default();
    cfg.plugins.path = Path::new(env!("CARGO_BIN_EXE_sysconfig"))
        .parent()
        .unwrap()
        .to_path_buf();
    cfg.sources.order = vec![SourceKind::Nocloud];
    cfg.sources.devices = vec![img];
    let mut out = Vec::new();
    let opts = Options {
        root: root.clone(),
        dry_run: false,
        mode: Mode::Run,
    };
    let report = daemon::run(&cfg, &opts, &runner::SystemRunner::new(), &mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    assert_eq!(report.instance_id, "iid-vol-1");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/nodename")).unwrap(),
        "volhost\n",
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/motd")).unwrap(),
        "hello from cidata\n"
    );
    assert!(report.ok(), "{text}");
    assert_eq!(
        std::fs::read_to_string(root.join("export/home/ann/.ssh/authorized_keys")).unwrap(),
        "ssh-ed25519 AAAA ann\n"
    );
    let shadow = std::fs::read_to_string(root.join("etc/shadow")).unwrap();
    assert!(shadow.starts_with("ann:NP:"), "{shadow}");
    let again = daemon::run(&cfg, &opts, &runner::SystemRunner::new(), &mut Vec::new()).unwrap();
    assert!(again.already_done);
}

#[test]
fn damaged_fat_images_never_panic() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config as PConfig, TestRunner};
    let t = tempfile::tempdir().unwrap();
    let Some(img) = fat_image(t.path(), "cidata", false) else {
        return;
    };
    let good = std::fs::read(img).unwrap();
    let mut runner = TestRunner::new(PConfig {
        cases: 300,
        ..PConfig::default()
    });
    let flips = prop::collection::vec((0usize..40_000, any::<u8>()), 1..24);
    runner
        .run(&flips, |flips| {
            let mut bytes = good.clone();
            for (at, v) in flips {
                bytes[at] = v;
            }
            if let Ok(Some(mut v)) =
                sysconfig::sources::volume::Volume::open(std::io::Cursor::new(bytes))
            {
                let _ = nocloud::seed_from_volume(&mut v);
            }
            Ok(())
        })
        .unwrap();
}
