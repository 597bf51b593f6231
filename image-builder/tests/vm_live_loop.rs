//! The live plugin loop of the development image, in a real QEMU guest (TCG): the
//! workspace is shared at `/repo`, the real `sysconfig` daemon and its plugins run from the
//! cargo target directory the test was built in, a plugin is replaced by a rebuilt one on
//! the host, the daemon is started again over the serial console and the guest shows the
//! new behaviour. No image is rebuilt.
//!
//! sysconfig and its plugins are linked against the host's C library, which the small
//! test guest lacks: the directories the host's dynamic loader takes them from are shared
//! read-only into the guest at the same paths. Without the guest (`scripts/vm-guest
//! setup`) or QEMU the test says it is skipped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image_builder::vm::{Accel, DirectBoot, Firmware, Network, QemuVm, RunOptions, Share, VmSpec};
use runner::{Cmd, Runner, SystemRunner};

const TEST: &str = "sysconfig_plugin_loop_in_a_guest";
const PROMPT: &str = "ib-guest# ";
/// Generous: two cores shared with other work, and TCG.
const BOOT: Duration = Duration::from_secs(180);
const CMD: Duration = Duration::from_secs(120);

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

/// The test guest's kernel and initramfs, or why the test is skipped.
fn guest() -> Result<(PathBuf, PathBuf), String> {
    if on_path("qemu-system-x86_64").is_none() {
        return Err("qemu-system-x86_64 is not installed".into());
    }
    let dir = std::env::var_os("IB_VM_GUEST")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/image-builder/vm-guest"))
        })
        .ok_or("no HOME and no IB_VM_GUEST")?;
    let (k, i) = (dir.join("vmlinux"), dir.join("initrd.img"));
    if k.is_file() && i.is_file() {
        Ok((k, i))
    } else {
        Err(format!(
            "no test guest in {} (run scripts/vm-guest setup)",
            dir.display()
        ))
    }
}

/// Where this test's cargo build lives: the target directory and the profile directory
/// (`<target>/debug`, or `<target>/<triple>/<profile>`) holding this test's binaries.
struct Build {
    workspace: PathBuf,
    target: PathBuf,
    profile_dir: PathBuf,
}

impl Build {
    fn of_this_test() -> Build {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the crate is in a workspace")
            .to_path_buf();
        // CARGO_TARGET_TMPDIR is `<target>/tmp`, wherever CARGO_TARGET_DIR put the target.
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target tmp dir has a parent")
            .to_path_buf();
        // This test runs as `<profile dir>/deps/vm_live_loop-HASH`.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable in <profile>/deps")
            .to_path_buf();
        Build {
            workspace,
            target,
            profile_dir,
        }
    }

    /// `cargo build -p sysconfig --bins` into the same target and profile as this test, so
    /// the guest runs what the workspace's sources say now.
    fn build_sysconfig(&self) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Cmd::new(cargo)
            .args(["build", "--locked", "-p", "sysconfig", "--bins"])
            .env("CARGO_TARGET_DIR", &self.target)
            .cwd(&self.workspace)
            .timeout(Duration::from_secs(1800));
        // The runner clears the environment; cargo needs its toolchain and the flags the
        // outer build used, or it would rebuild everything differently.
        for var in [
            "PATH",
            "HOME",
            "CARGO_HOME",
            "RUSTUP_HOME",
            "RUSTUP_TOOLCHAIN",
            "RUSTFLAGS",
            "CARGO_BUILD_JOBS",
            "CARGO_NET_OFFLINE",
        ] {
            if let Some(v) = std::env::var_os(var) {
                cmd = cmd.env(var, v);
            }
        }
        let profile = self
            .profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug");
        match profile {
            "debug" => {}
            "release" => cmd = cmd.arg("--release"),
            other => cmd = cmd.args(["--profile", other]),
        }
        if let Some(triple) = self
            .profile_dir
            .parent()
            .filter(|p| *p != self.target)
            .and_then(Path::file_name)
        {
            cmd = cmd.arg("--target").arg(triple);
        }
        SystemRunner::new()
            .run(&cmd)
            .expect("cargo build -p sysconfig");
    }
}

/// The directories `ldd` names for `exe`'s libraries and loader (as the loader sees
/// them, e.g. `/lib/x86_64-linux-gnu` and `/lib64`): each becomes a read-only share at the
/// same path in the guest. A static program needs none.
fn library_dirs(exe: &Path) -> Vec<PathBuf> {
    let Ok(out) = SystemRunner::new().run(&Cmd::new("ldd").arg(exe)) else {
        return vec![];
    };
    let mut dirs: Vec<PathBuf> = Vec::new();
    for line in out.stdout_str().lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        let Some(dir) = path
            .filter(|p| p.starts_with('/'))
            .and_then(|p| Path::new(p).parent())
        else {
            continue;
        };
        if !dirs.iter().any(|d| d == dir) {
            dirs.push(dir.to_path_buf());
        }
    }
    dirs
}

/// A replacement `hostname` plugin, built from a one-file program that speaks the plugin
/// protocol (version 1) by hand: besides /etc/nodename it writes /etc/motd naming its
/// version. Written beside the plugin and renamed over it, as cargo installs a build
/// product, so a plugin that is running is never rewritten.
fn build_hostname_plugin(src_dir: &Path, plugins: &Path, version: &str) {
    let src = src_dir.join("hostname_plugin.rs");
    std::fs::write(
        &src,
        r#####"use std::io::BufRead;

const VERSION: &str = "@VERSION@";

/// The string value of `"key":"..."` after `from` in a request line.
fn field<'a>(line: &'a str, from: &str, key: &str) -> Option<&'a str> {
    let line = &line[line.find(from)?..];
    let pat = format!("\"{key}\":\"");
    let rest = &line[line.find(&pat)? + pat.len()..];
    Some(&rest[..rest.find('"')?])
}

fn main() {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { return };
        let host = field(&line, "\"desired\":", "hostname").unwrap_or("");
        let result = if line.contains("\"method\":\"describe\"") {
            format!(r#"{{"name":"hostname","version":"{VERSION}","keys":["hostname"]}}"#)
        } else if line.contains("\"method\":\"plan\"") {
            format!(
                r#"{{"changes":[{{"id":"nodename","key":"hostname","summary":"set /etc/nodename to {host} ({VERSION})"}}]}}"#
            )
        } else {
            let root = std::path::Path::new(field(&line, "\"params\":", "root").unwrap_or("/"));
            let written = std::fs::write(root.join("etc/nodename"), format!("{host}\n"))
                .and_then(|_| {
                    std::fs::write(root.join("etc/motd"), format!("hostname plugin {VERSION}: {host}\n"))
                });
            let status = if written.is_ok() { "ok" } else { "failed" };
            format!(
                r#"{{"results":[{{"id":"nodename","status":"{status}","actions":["write: /etc/nodename (0644)","write: /etc/motd (0644)"]}}]}}"#
            )
        };
        println!(r#"{{"protocol":1,"result":{result}}}"#);
    }
}
"#####
            .replace("@VERSION@", version),
    )
    .unwrap();
    let rustc = on_path("rustc").unwrap_or_else(|| "rustc".into());
    let tmp = plugins.join(".sysconfig-plugin-hostname.new");
    SystemRunner::new()
        .run(
            &Cmd::new(rustc)
                .args(["-C", "strip=symbols", "-o"])
                .arg(&tmp)
                .arg(&src)
                .env("HOME", std::env::var_os("HOME").unwrap_or_default())
                .env("PATH", std::env::var_os("PATH").unwrap_or_default()),
        )
        .expect("rustc hostname_plugin.rs");
    std::fs::rename(&tmp, plugins.join("sysconfig-plugin-hostname")).unwrap();
}

/// The path `host` has in the guest, where `shares` are mounted.
fn in_guest(host: &Path, shares: &[(PathBuf, &str)]) -> String {
    shares
        .iter()
        .find_map(|(dir, at)| {
            host.strip_prefix(dir)
                .ok()
                .map(|rel| Path::new(at).join(rel).display().to_string())
        })
        .expect("path is on a share")
}

fn run_ok(vm: &mut QemuVm, cmd: &str) -> String {
    let out = vm.console().run(cmd, CMD).unwrap();
    assert_eq!(out.status, 0, "`{cmd}` failed: {}", out.output);
    out.output
}

#[test]
fn sysconfig_plugin_loop_in_a_guest() {
    let (vmlinux, initrd) = match guest() {
        Ok(g) => g,
        Err(why) => {
            eprintln!("{TEST}: skipped: {why}");
            return;
        }
    };
    let b = Build::of_this_test();
    let t = Instant::now();
    b.build_sysconfig();
    eprintln!("{TEST}: cargo build -p sysconfig: {:?}", t.elapsed());
    let daemon = b.profile_dir.join("sysconfig");

    // The daemon's config, the desired state and the plugin directory live in a fresh
    // directory of the target directory, so the guest sees them through the same share
    // as the build products. The real plugins are hard links of cargo's outputs: the
    // replacement below renames over the link, never writing into cargo's file.
    let work = tempfile::Builder::new()
        .prefix("live-loop-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let plugins = work.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let mut linked = 0;
    for e in std::fs::read_dir(&b.profile_dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("sysconfig-plugin-") && !name.contains('.') {
            std::fs::hard_link(e.path(), plugins.join(&name)).unwrap();
            linked += 1;
        }
    }
    assert!(
        plugins.join("sysconfig-plugin-hostname").is_file(),
        "cargo built no hostname plugin in {}",
        b.profile_dir.display()
    );

    let mut mounts: Vec<(PathBuf, &str)> = vec![(b.workspace.clone(), "/repo")];
    let mut shares = vec![Share {
        tag: "repo".into(),
        path: b.workspace.clone(),
        readonly: false,
    }];
    let mut cmdline = String::from("console=ttyS0 panic=-1 quiet ib.9p=repo:/repo");
    if !b.target.starts_with(&b.workspace) {
        // CARGO_TARGET_DIR outside the checkout: share it on its own.
        mounts.insert(0, (b.target.clone(), "/target"));
        shares.push(Share {
            tag: "target".into(),
            path: b.target.clone(),
            readonly: false,
        });
        cmdline.push_str(" ib.9p=target:/target");
    }
    for (i, dir) in library_dirs(&daemon).into_iter().enumerate() {
        let host = std::fs::canonicalize(&dir).unwrap();
        cmdline.push_str(&format!(" ib.9p=lib{i}:{}", dir.display()));
        shares.push(Share {
            tag: format!("lib{i}"),
            path: host,
            readonly: true,
        });
    }
    let spec = VmSpec {
        name: "ib-live-loop".into(),
        memory_mib: 256,
        cpus: 1,
        firmware: Firmware::Bios,
        network: Network::None,
        shares,
        kernel: Some(DirectBoot {
            kernel: vmlinux,
            initrd: Some(initrd),
            cmdline,
        }),
        ..VmSpec::default()
    };

    let g_work = in_guest(work.path(), &mounts);
    let g_daemon = in_guest(&daemon, &mounts);
    std::fs::write(
        work.path().join("sysconfig.toml"),
        format!(
            "[plugins]\npath = \"{g_work}/plugins\"\n\n[state]\nonce_per_instance = false\n\n\
             [sources]\norder = [\"local\"]\ndevices = []\n"
        ),
    )
    .unwrap();
    std::fs::write(
        work.path().join("desired.toml"),
        "hostname = \"loop-one\"\n",
    )
    .unwrap();

    let runs = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        accel: Accel::Tcg,
        run_root: Some(runs.path().to_path_buf()),
        ..RunOptions::default()
    };
    let booted = Instant::now();
    let mut vm = QemuVm::start(&spec, &opts, &SystemRunner::new()).unwrap();
    vm.console().wait_for(PROMPT, BOOT).unwrap();
    eprintln!("{TEST}: boot to prompt: {:?}", booted.elapsed());
    let guest_time = Instant::now();

    // Short names in the guest shell keep the typed lines short.
    run_ok(
        &mut vm,
        &format!("W={g_work}; D={g_daemon}; mkdir -p /tmp/root/etc/sysconfig.d /tmp/root/etc/inet"),
    );
    let apply = "cp $W/desired.toml /tmp/root/etc/sysconfig.d/ && $D -c $W/sysconfig.toml -R /tmp/root apply";

    // The shipped hostname plugin, run by the daemon from the build.
    let out = run_ok(&mut vm, apply);
    assert!(
        out.contains("hostname: set /etc/nodename to loop-one\n"),
        "{out}"
    );
    assert_eq!(run_ok(&mut vm, "cat /tmp/root/etc/nodename"), "loop-one\n");
    let hosts = run_ok(&mut vm, "cat /tmp/root/etc/inet/hosts");
    assert!(
        hosts.contains("127.0.0.1\tloop-one localhost loghost"),
        "{hosts}"
    );
    let motd = vm.console().run("cat /tmp/root/etc/motd", CMD).unwrap();
    assert_ne!(
        motd.status, 0,
        "the shipped plugin writes no motd: {motd:?}"
    );

    // On the host: a new desired state and a rebuilt hostname plugin, while the guest runs.
    let cycle = Instant::now();
    std::fs::write(
        work.path().join("desired.toml"),
        "hostname = \"loop-two\"\n",
    )
    .unwrap();
    build_hostname_plugin(work.path(), &plugins, "2.0.0-live");
    let built = cycle.elapsed();

    // In the guest: start the daemon again and see the new plugin at work.
    let out = run_ok(&mut vm, apply);
    assert!(
        out.contains("hostname: set /etc/nodename to loop-two (2.0.0-live)\n"),
        "{out}"
    );
    assert_eq!(run_ok(&mut vm, "cat /tmp/root/etc/nodename"), "loop-two\n");
    assert_eq!(
        run_ok(&mut vm, "cat /tmp/root/etc/motd"),
        "hostname plugin 2.0.0-live: loop-two\n"
    );
    eprintln!(
        "{TEST}: edit-build-restart cycle: {:?} (plugin build {built:?}); {linked} plugins",
        cycle.elapsed()
    );
    eprintln!(
        "{TEST}: guest time after the prompt: {:?}",
        guest_time.elapsed()
    );

    vm.console().send_line("poweroff -f").unwrap();
    let status = vm
        .wait_timeout(CMD)
        .unwrap()
        .expect("QEMU exits with the guest");
    assert!(status.success(), "{status:?}");
}
