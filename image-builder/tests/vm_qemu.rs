//! Real QEMU guests (TCG): the console API, the live edit-build-restart loop over a 9P
//! share, Ctrl-C cleanup and parallel runs. The guest is the small Linux guest that
//! `scripts/vm-guest setup` prepares; without it (or without QEMU) these tests say they
//! are skipped, unless `IB_REQUIRE_GUESTS` is set: then they fail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::guest;

use guest::Guest;
use image_builder::vm::{Accel, DirectBoot, Firmware, Network, QemuVm, RunOptions, Share, VmSpec};
use runner::{Cmd, Runner, SystemRunner};

const PROMPT: &str = "ib-guest# ";
/// Generous: two cores shared with other work, and TCG.
const BOOT: Duration = Duration::from_secs(180);
const CMD: Duration = Duration::from_secs(60);

fn guest(test: &str) -> Option<Guest> {
    guest::guest(test, &[])
}

fn spec(g: &Guest, repo: &Path, cmdline: &str) -> VmSpec {
    VmSpec {
        name: "ib-test".into(),
        memory_mib: 256,
        cpus: 1,
        firmware: Firmware::Bios,
        network: Network::None,
        shares: vec![Share {
            tag: "repo".into(),
            path: repo.to_path_buf(),
            readonly: false,
        }],
        kernel: Some(DirectBoot {
            kernel: g.vmlinux.clone(),
            initrd: Some(g.initrd.clone()),
            cmdline: format!("console=ttyS0 panic=-1 ib.9p=repo:/repo {cmdline}"),
        }),
        ..VmSpec::default()
    }
}

fn rustc() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("rustc"))
                .find(|r| r.is_file())
        })
        .unwrap_or_else(|| "rustc".into())
}

/// Builds the stand-in daemon into `ws/target/standin` the way cargo installs a build
/// product: write beside it, then rename over it, so a running copy is never rewritten.
/// It is linked statically because the guest has no C library.
fn build_standin(ws: &Path, version: &str) {
    let src = ws.join("standin.rs");
    std::fs::write(
        &src,
        format!(
            r#"fn main() {{
    let out = std::env::args().nth(1).expect("output path");
    std::fs::write(&out, "standin {version}\n").expect("write");
    loop {{ std::thread::sleep(std::time::Duration::from_secs(1)); }}
}}
"#
        ),
    )
    .unwrap();
    std::fs::create_dir_all(ws.join("target")).unwrap();
    let tmp = ws.join("target/.standin.new");
    SystemRunner::new()
        .run(
            &Cmd::new(rustc())
                .args(["-C", "target-feature=+crt-static", "-C", "strip=symbols"])
                .arg("-o")
                .arg(&tmp)
                .arg(&src)
                .env("HOME", std::env::var_os("HOME").unwrap_or_default()),
        )
        .unwrap();
    std::fs::rename(&tmp, ws.join("target/standin")).unwrap();
}

/// Runs `cmd` in the guest until its output contains `want` (a restarted daemon needs a
/// moment to write its file).
fn eventually(vm: &mut QemuVm, cmd: &str, want: &str) {
    let start = Instant::now();
    loop {
        let out = vm.console().run(cmd, CMD).unwrap();
        if out.output.contains(want) {
            return;
        }
        assert!(
            start.elapsed() < CMD,
            "`{cmd}` never printed {want:?}; last: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn console_drives_a_guest_through_the_live_loop() {
    let Some(g) = guest("console_drives_a_guest_through_the_live_loop") else {
        return;
    };
    let ws = tempfile::tempdir().unwrap();
    let runs = tempfile::tempdir().unwrap();
    build_standin(ws.path(), "v1");
    let opts = RunOptions {
        accel: Accel::Tcg,
        run_root: Some(runs.path().to_path_buf()),
        ..RunOptions::default()
    };
    let mut vm = QemuVm::start(&spec(&g, ws.path(), "quiet"), &opts, &SystemRunner::new()).unwrap();
    let run_dir = vm.run_dir().to_path_buf();
    assert!(run_dir.starts_with(runs.path()));
    vm.console().wait_for(PROMPT, BOOT).unwrap();

    let c = vm.console();
    let out = c.run("uname -s; echo $((6 * 7))", CMD).unwrap();
    assert_eq!((out.status, out.output.as_str()), (0, "Linux\n42\n"));
    let out = c.run("ls /nonexistent-dir", CMD).unwrap();
    assert_ne!(out.status, 0);
    assert!(out.output.contains("nonexistent-dir"), "{out:?}");
    let out = c.run("grep ' /repo ' /proc/mounts", CMD).unwrap();
    assert!(out.output.starts_with("repo /repo 9p "), "{out:?}");

    // Start the program from the shared workspace and check its effect.
    let start = "/repo/target/standin /tmp/effect & echo $! > /tmp/standin.pid";
    assert_eq!(vm.console().run(start, CMD).unwrap().status, 0);
    eventually(&mut vm, "cat /tmp/effect", "standin v1");

    // Edit and rebuild on the host while it runs, restart it in the guest, see the change.
    let cycle = Instant::now();
    build_standin(ws.path(), "v2");
    let restart = format!("kill $(cat /tmp/standin.pid); rm -f /tmp/effect; {start}");
    assert_eq!(vm.console().run(&restart, CMD).unwrap().status, 0);
    eventually(&mut vm, "cat /tmp/effect", "standin v2");
    eprintln!("edit-build-restart cycle: {:?}", cycle.elapsed());

    // The guest writes through the share too.
    let out = vm
        .console()
        .run("echo from-guest > /repo/written", CMD)
        .unwrap();
    assert_eq!(out.status, 0);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("written")).unwrap(),
        "from-guest\n"
    );

    // Powering off ends QEMU, and with it the run.
    vm.console().send_line("poweroff -f").unwrap();
    let status = vm
        .wait_timeout(CMD)
        .unwrap()
        .expect("QEMU exits with the guest");
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(&vm.paths().console_log).unwrap();
    assert!(log.contains("standin"), "console log has the session");
    drop(vm);
    assert!(!run_dir.exists(), "run directory left behind");
}

/// A `vm` command running in the background, killed if the test fails.
struct VmCli {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl VmCli {
    fn start(g: &Guest, tmp: &Path, repo: &Path, id: &str, cmdline: &str) -> VmCli {
        let out = tmp.join(format!("{id}.out"));
        let err = tmp.join(format!("{id}.err"));
        let child = Command::new(env!("CARGO_BIN_EXE_image-builder"))
            .args([
                "vm",
                "--accel",
                "tcg",
                "--firmware",
                "bios",
                "--net",
                "none",
            ])
            .args(["-m", "256", "-c", "1", "--timeout", "300", "--repo"])
            .arg(repo)
            .arg("--kernel")
            .arg(&g.vmlinux)
            .arg("--initrd")
            .arg(&g.initrd)
            .arg("--append")
            .arg(format!("console=ttyS0 panic=-1 ib.9p=repo:/repo {cmdline}"))
            .env("TMPDIR", tmp.join("runs"))
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        VmCli { child, out, err }
    }

    fn wait_for(&self, file: &Path, text: &str) -> String {
        let start = Instant::now();
        loop {
            let s = std::fs::read_to_string(file).unwrap_or_default();
            if s.contains(text) {
                return s;
            }
            assert!(
                start.elapsed() < BOOT,
                "no {text:?} in {}: {s}",
                file.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// QEMU's pid and console socket, from the line `vm` prints when it starts.
    fn started(&self) -> (u32, String) {
        let err = self.wait_for(&self.err, "console socket ");
        let pid = err
            .split("qemu pid ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|p| p.parse().ok())
            .expect("qemu pid in the banner");
        let sock = err
            .split("console socket ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .expect("socket in the banner")
            .to_string();
        (pid, sock)
    }

    fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    fn wait(&mut self) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(start.elapsed() < CMD, "vm did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for VmCli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

fn empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

#[test]
fn ctrl_c_stops_the_guest_and_removes_the_run() {
    let Some(g) = guest("ctrl_c_stops_the_guest_and_removes_the_run") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("runs")).unwrap();
    let mut vm = VmCli::start(&g, tmp.path(), tmp.path(), "a", "");
    let (qemu, sock) = vm.started();
    assert!(sock.starts_with(&tmp.path().join("runs").display().to_string()));
    // Interrupt mid-boot, once the kernel is talking.
    vm.wait_for(&vm.out, "Linux version");
    assert!(!gone(qemu));
    vm.signal(rustix::process::Signal::INT);
    assert_eq!(vm.wait(), Some(130));
    assert!(gone(qemu), "qemu {qemu} outlived Ctrl-C");
    assert!(empty(&tmp.path().join("runs")), "run files left behind");
    let err = std::fs::read_to_string(&vm.err).unwrap();
    assert!(err.contains("interrupted"), "{err}");
}

#[test]
fn two_runs_at_once_do_not_collide() {
    let Some(g) = guest("two_runs_at_once_do_not_collide") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("runs")).unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let mut a = VmCli::start(&g, tmp.path(), &repo, "a", "quiet");
    let mut b = VmCli::start(&g, tmp.path(), &repo, "b", "quiet");
    let (qa, sa) = a.started();
    let (qb, sb) = b.started();
    assert_ne!(qa, qb);
    assert_ne!(sa, sb, "both runs got the same console socket");
    a.wait_for(&a.out, PROMPT);
    b.wait_for(&b.out, PROMPT);
    for v in [&a, &b] {
        v.signal(rustix::process::Signal::TERM);
    }
    assert_eq!(a.wait(), Some(130));
    assert_eq!(b.wait(), Some(130));
    assert!(gone(qa) && gone(qb));
    assert!(empty(&tmp.path().join("runs")));
}

#[test]
fn a_qemu_that_fails_reports_why_and_leaves_nothing() {
    let test = "a_qemu_that_fails_reports_why_and_leaves_nothing";
    if guest::need_tools(test, &["qemu-system-x86_64"]).is_none() {
        return;
    }
    let runs = tempfile::tempdir().unwrap();
    let mut s = spec(
        &Guest {
            vmlinux: runs.path().join("no-such-kernel"),
            initrd: runs.path().join("no-such-initrd"),
        },
        runs.path(),
        "",
    );
    s.shares.clear();
    let opts = RunOptions {
        accel: Accel::Tcg,
        run_root: Some(runs.path().to_path_buf()),
        ..RunOptions::default()
    };
    // QEMU holds its start until the console connects, so the failure shows up as the
    // console closing and QEMU exiting with an error on standard error.
    let result = QemuVm::start(&s, &opts, &SystemRunner::new());
    let msg = match result {
        Err(e) => e.to_string(),
        Ok(mut vm) => {
            let e = vm.console().wait_for(PROMPT, CMD).unwrap_err();
            assert!(
                matches!(e, image_builder::vm::ConsoleError::Closed { .. }),
                "{e}"
            );
            let status = vm.wait_timeout(CMD).unwrap().expect("QEMU exits");
            assert!(!status.success());
            vm.qemu_stderr()
        }
    };
    assert!(msg.contains("no-such-kernel"), "{msg}");
    let left: Vec<_> = std::fs::read_dir(runs.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("ib-vm-"))
        .collect();
    assert!(left.is_empty(), "run directory left behind");
}
