//! The warm embedded ZFS guest end to end, on this host (a Linux host without /dev/zfs):
//! the first `build` starts the guest and leaves it running, the next reuses it (no boot)
//! and sees an edited template, two builds at once take turns, Ctrl-C of a build in the
//! guest runs the build's own cleanup and leaves nothing behind, a killed guest is
//! replaced, `embedded stop` stops it and an idle one stops by itself.
//!
//! Without the zfs-vm guest (`scripts/zfs-vm setup`) or QEMU the test says it is skipped,
//! unless `IB_REQUIRE_GUESTS` is set: then a missing guest fails it.

use crate::guest;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn harness() -> PathBuf {
    guest::repo().join("scripts/zfs-vm")
}

/// The cache root the harness uses, computed as it does.
fn zfs_vm_cache() -> PathBuf {
    if let Some(c) = std::env::var_os("ZFS_VM_CACHE") {
        return PathBuf::from(c);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_default()
        .join("image-builder/zfs-vm")
}

fn set_up(test: &str) -> Option<()> {
    guest::need_tools(test, &["qemu-system-x86_64", "sfdisk"])?;
    if Path::new("/dev/zfs").exists() {
        return guest::skip(
            test,
            "this host has /dev/zfs: builds run here, not in a guest",
        );
    }
    let out = Command::new(harness())
        .arg("status")
        .env("ZFS_VM_CACHE", zfs_vm_cache())
        .output()
        .unwrap();
    if !out.status.success() {
        return guest::skip(
            test,
            "the zfs-vm guest is not set up (run scripts/zfs-vm setup)",
        );
    }
    Some(())
}

/// `image-builder` with the pool image and the guest's files in `work/cache`.
fn ib(work: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_image-builder"));
    c.current_dir(work)
        .env("XDG_CACHE_HOME", work.join("cache"))
        .env("ZFS_VM_CACHE", zfs_vm_cache())
        .env("IMAGE_BUILDER_ZFS_VM", harness())
        .env("IMAGE_BUILDER_VM_TIMEOUT", "1800")
        .env("IMAGE_BUILDER_VM_IDLE", "600")
        .env("NO_COLOR", "1");
    c
}

fn build(work: &Path, name: &str, extra: &[&str]) -> Command {
    let mut c = ib(work);
    c.args([
        "build",
        "-d",
        "ibwarm/images",
        "-g",
        "g",
        "-n",
        name,
        "-T",
        "t",
    ])
    .args(["--vm-disk-size", "1"])
    .args(extra);
    c
}

fn run(c: &mut Command) -> (Output, String) {
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{err}");
    (out, err)
}

fn write(path: &Path, text: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const HELLO: &str = r#"{
  "dataset": { "name": "hello", "output_snapshot": "base" },
  "steps": [
    { "t": "ensure_dir", "dir": "/etc", "owner": "root", "group": "sys", "mode": "755" },
    { "t": "ensure_file", "file": "/etc/motd", "src": "motd", "owner": "root", "group": "sys", "mode": "644" },
    { "t": "pack_tar", "name": "hello.tar" }
  ]
}"#;

/// A stage with a slow step (a large file copied in and packed), to interrupt.
const SLOW: &str = r#"{
  "dataset": { "name": "slow", "output_snapshot": "base" },
  "steps": [
    { "t": "ensure_dir", "dir": "/big", "owner": "root", "group": "root", "mode": "755" },
    { "t": "ensure_file", "file": "/big/blob", "src": "blob", "owner": "root", "group": "root", "mode": "644" },
    { "t": "pack_tar", "name": "slow.tar.gz" }
  ]
}"#;

fn guest_dir(work: &Path) -> PathBuf {
    work.join("cache/image-builder/embedded/warm/ibwarm")
}

fn qemu_pid(work: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(guest_dir(work).join("qemu.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

fn status(work: &Path) -> String {
    let out = ib(work).args(["embedded", "status"]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every dataset and snapshot of the pool, listed in the warm guest.
fn datasets(work: &Path) -> Vec<String> {
    let out = ib(work)
        .args(["embedded", "exec", "--pool", "ibwarm", "--"])
        .args([
            "zfs", "list", "-H", "-t", "all", "-o", "name", "-r", "ibwarm",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("reusing the running guest"), "{err}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// Stops whatever guest the test left, even when it fails.
struct StopAtEnd(PathBuf);
impl Drop for StopAtEnd {
    fn drop(&mut self) {
        let _ = ib(&self.0).args(["embedded", "stop"]).output();
    }
}

#[test]
fn warm_guest_lifecycle() {
    const TEST: &str = "warm_guest_lifecycle";
    if set_up(TEST).is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let _stop = StopAtEnd(w.to_path_buf());
    write(&w.join("t/g/hello.json"), HELLO.as_bytes());
    write(&w.join("t/g/slow.json"), SLOW.as_bytes());
    write(&w.join("t/files/motd"), b"first\n");
    // Random, so compression cannot make it quick.
    let mut blob = vec![0u8; 48 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in blob.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    write(&w.join("t/files/blob"), &blob);
    drop(blob);

    // 1. The first build starts the guest and leaves it running.
    let (out, err) = run(&mut build(w, "hello", &[]));
    assert_eq!(out.status.code(), Some(0), "first build");
    assert!(err.contains("starting it"), "{err}");
    let first = qemu_pid(w).expect("no guest runs after the first build");
    let tar1 = std::fs::read(w.join("output/hello.tar")).unwrap();
    let s = status(w);
    assert!(
        s.contains(&format!("ibwarm: running (qemu pid {first}")),
        "{s}"
    );
    assert!(s.contains("idle for"), "{s}");

    // 2. The next build reuses it, and sees the template's file as the host has it now.
    write(
        &w.join("t/files/motd"),
        b"second, edited while the guest ran\n",
    );
    let t0 = Instant::now();
    let (out, err) = run(&mut build(w, "hello", &[]));
    let warm = t0.elapsed();
    assert_eq!(out.status.code(), Some(0), "second build");
    assert!(err.contains("reusing the running guest"), "{err}");
    assert!(!err.contains("starting it"), "{err}");
    assert_eq!(qemu_pid(w), Some(first));
    let tar2 = std::fs::read(w.join("output/hello.tar")).unwrap();
    assert_ne!(tar1, tar2, "the edited motd did not reach the build");
    let edited = b"second, edited while the guest ran\n";
    assert!(tar2.windows(edited.len()).any(|x| x == edited));
    eprintln!("{TEST}: warm rebuild in {warm:?}");
    // `plan -d` asks the same guest about the cache.
    let out = ib(w)
        .args([
            "plan",
            "-d",
            "ibwarm/images",
            "-g",
            "g",
            "-n",
            "hello",
            "-T",
            "t",
        ])
        .output()
        .unwrap();
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{se}");
    assert!(
        so.contains("cache: hit (ibwarm/images/work/g/hello@base is current)"),
        "{so}"
    );
    assert!(se.contains("reusing the running guest"), "{se}");

    // 3. Two builds at once take turns at the one guest.
    let a = build(w, "hello", &["-N", "one"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (out_b, err_b) = run(&mut build(w, "hello", &["-N", "two"]));
    let out_a = a.wait_with_output().unwrap();
    let err_a = String::from_utf8_lossy(&out_a.stderr).into_owned();
    eprintln!("{err_a}");
    assert_eq!(
        (out_a.status.code(), out_b.status.code()),
        (Some(0), Some(0))
    );
    assert!(
        format!("{err_a}{err_b}").contains("another command is running in it"),
        "neither build waited for the other"
    );
    assert!(w.join("output/g-one.build.json").exists());
    assert!(w.join("output/g-two.build.json").exists());
    assert_eq!(qemu_pid(w), Some(first));

    // 4. Ctrl-C of a build in the guest: its cleanup runs there, nothing is left.
    let before = datasets(w);
    let mut slow = build(w, "slow", &[])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(slow.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        seen += &l;
        seen.push('\n');
        if l.starts_with("step 1: ensure_file") {
            break;
        }
    }
    assert!(seen.contains("step 1: ensure_file"), "{seen}");
    let pid = rustix::process::Pid::from_raw(slow.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    for l in lines {
        seen += &l.unwrap();
        seen.push('\n');
    }
    let code = slow.wait().unwrap().code();
    eprintln!("{seen}");
    assert_eq!(code, Some(130), "{seen}");
    assert!(
        seen.contains("everything the build made was undone"),
        "{seen}"
    );
    assert!(!w.join("output/slow.tar.gz").exists());
    let after = datasets(w);
    let extra: Vec<&String> = after
        .iter()
        .filter(|d| !before.contains(d) && !d.ends_with("/work/g/slow"))
        .collect();
    assert!(extra.is_empty(), "left behind: {extra:?}");
    assert!(
        !after.iter().any(|d| d.contains("work/g/slow@")),
        "{after:?}"
    );
    assert_eq!(
        qemu_pid(w),
        Some(first),
        "the guest did not survive the Ctrl-C"
    );

    // 5. A killed guest is replaced by the next command.
    let pid = rustix::process::Pid::from_raw(first as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    let t0 = Instant::now();
    while qemu_pid(w).is_some() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (out, err) = run(&mut build(w, "hello", &[]));
    assert_eq!(out.status.code(), Some(0), "build after the kill");
    assert!(err.contains("the last guest is gone"), "{err}");
    let second = qemu_pid(w).expect("no guest after the replacement");
    assert_ne!(second, first);

    // 6. `embedded stop` stops it.
    let out = ib(w).args(["embedded", "stop"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ibwarm: stopped"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(qemu_pid(w), None);
    assert!(status(w).contains("no warm embedded guest runs"));

    // 7. An idle guest stops by itself, its pool exported (a cold run imports it).
    let (out, _) = run(&mut build(w, "hello", &["--vm-idle", "2"]));
    assert_eq!(out.status.code(), Some(0));
    let t0 = Instant::now();
    while qemu_pid(w).is_some() && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(qemu_pid(w), None, "the idle guest did not stop");
    let log = std::fs::read_to_string(guest_dir(w).join("guest.log")).unwrap();
    assert!(log.contains("idle for its idle time"), "{log}");
    let (out, err) = run(&mut build(w, "hello", &["--vm-cold"]));
    assert_eq!(out.status.code(), Some(0), "cold build after the idle stop");
    assert!(err.contains("one-shot"), "{err}");
    assert!(err.contains("cache hit"), "{err}");
    assert_eq!(qemu_pid(w), None);
}
