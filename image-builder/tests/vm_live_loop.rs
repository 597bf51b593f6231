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
        let mut cmd = toolchain_env(Cmd::new(cargo()))
            .args(["build", "--locked", "-p", "sysconfig", "--bins"])
            .env("CARGO_TARGET_DIR", &self.target)
            .cwd(&self.workspace)
            .timeout(Duration::from_secs(1800));
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

/// The cargo running this test (cargo sets `CARGO` for the tests it runs).
fn cargo() -> PathBuf {
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| "cargo".into())
}

/// The rustc of the same toolchain, which can link against the rlibs cargo built.
fn rustc() -> PathBuf {
    let sibling = cargo().with_file_name("rustc");
    if sibling.is_file() {
        sibling
    } else {
        on_path("rustc").unwrap_or_else(|| "rustc".into())
    }
}

/// The runner clears the environment; cargo and rustc need their toolchain and the flags
/// the outer build used, or cargo would rebuild everything differently.
fn toolchain_env(mut cmd: Cmd) -> Cmd {
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
    cmd
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

/// The changed `hostname` plugin: the shipped one (the real `Hostname` of the sysconfig
/// library, linked from the build) plus one new change that greets on /etc/motd.
const HOSTNAME_PLUGIN: &str = r#"use serde_json::{Map, Value};
use sysconfig::plugins::{change, hostname::Hostname, Ctx, Outcome, Plugin};
use sysconfig::protocol::Change;

struct Greeting;

fn motd(desired: &Map<String, Value>) -> Option<String> {
    let h = desired.get("hostname")?.as_str()?;
    Some(format!("welcome to {h} (@VERSION@)\n"))
}

impl Plugin for Greeting {
    const NAME: &'static str = Hostname::NAME;
    const KEYS: &'static [&'static str] = Hostname::KEYS;

    fn plan(&self, ctx: &Ctx, desired: &Map<String, Value>) -> Result<Vec<Change>, String> {
        let mut out = Hostname.plan(ctx, desired)?;
        if let Some(m) = motd(desired) {
            if ctx.read("/etc/motd")?.as_deref() != Some(m.as_str()) {
                out.push(change("hostname", "motd", "greet on /etc/motd", Value::Null));
            }
        }
        Ok(out)
    }

    fn apply(&self, ctx: &Ctx, desired: &Map<String, Value>, c: &Change) -> Result<Outcome, String> {
        if c.id != "motd" {
            return Hostname.apply(ctx, desired, c);
        }
        let m = motd(desired).ok_or("hostname is not set")?;
        ctx.write("/etc/motd", m.as_bytes(), 0o644, None)?;
        Ok(Outcome::Done)
    }
}

fn main() -> std::process::ExitCode {
    sysconfig::plugins::main(Greeting)
}
"#;

/// Builds [`HOSTNAME_PLUGIN`] against the sysconfig library cargo just built, and renames
/// it over the plugin as cargo installs a build product (write beside, then rename), so a
/// plugin that is running is never rewritten. The plugin names `serde_json` types, and a
/// target directory can hold several builds of serde_json: the one sysconfig was built
/// with is the one rustc accepts, so candidates are tried newest first.
fn build_hostname_plugin(b: &Build, src_dir: &Path, plugins: &Path, version: &str) {
    let src = src_dir.join("hostname_plugin.rs");
    std::fs::write(&src, HOSTNAME_PLUGIN.replace("@VERSION@", version)).unwrap();
    let deps = b.profile_dir.join("deps");
    let mut candidates: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&deps)
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("libserde_json-") && n.ends_with(".rlib")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    candidates.sort();
    let rustc = rustc();
    let tmp = plugins.join(".sysconfig-plugin-hostname.new");
    let mut errors = Vec::new();
    for (_, serde_json) in candidates.iter().rev() {
        let cmd = toolchain_env(Cmd::new(&rustc))
            .args([
                "--edition",
                "2021",
                "-C",
                "debuginfo=0",
                "-C",
                "strip=debuginfo",
                "-L",
            ])
            .arg(format!("dependency={}", deps.display()))
            .arg("--extern")
            .arg(format!(
                "sysconfig={}",
                b.profile_dir.join("libsysconfig.rlib").display()
            ))
            .arg("--extern")
            .arg(format!("serde_json={}", serde_json.display()))
            .arg("-o")
            .arg(&tmp)
            .arg(&src);
        match SystemRunner::new().run(&cmd) {
            Ok(_) => {
                std::fs::rename(&tmp, plugins.join("sysconfig-plugin-hostname")).unwrap();
                return;
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    panic!(
        "cannot build the changed hostname plugin against {}: {errors:#?}",
        deps.display()
    );
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
#[ignore = "builds a changed plugin with rustc against the rlibs in the target dir, which fails when that dir holds rlibs from other builds; run with --ignored on a clean target dir"]
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
    // Unoptimised plugins under TCG on a busy host can take longer than the default
    // describe timeout (10 s) just to start.
    std::fs::write(
        work.path().join("sysconfig.toml"),
        format!(
            "[plugins]\npath = \"{g_work}/plugins\"\ndescribe_timeout_secs = 120\n\
             plan_timeout_secs = 120\n\n[state]\nonce_per_instance = false\n\n\
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
    let t = Instant::now();
    let out = run_ok(&mut vm, apply);
    eprintln!("{TEST}: first apply: {:?}", t.elapsed());
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
    build_hostname_plugin(&b, work.path(), &plugins, "2.0.0-live");
    let built = cycle.elapsed();

    // In the guest: start the daemon again and see the new plugin at work.
    let t = Instant::now();
    let out = run_ok(&mut vm, apply);
    eprintln!("{TEST}: apply after the change: {:?}", t.elapsed());
    assert!(out.contains("hostname: greet on /etc/motd\n"), "{out}");
    assert!(out.contains("hostname: motd ok\n"), "{out}");
    assert_eq!(run_ok(&mut vm, "cat /tmp/root/etc/nodename"), "loop-two\n");
    let hosts = run_ok(&mut vm, "cat /tmp/root/etc/inet/hosts");
    assert!(
        hosts.contains("127.0.0.1\tloop-two localhost loghost"),
        "{hosts}"
    );
    assert_eq!(
        run_ok(&mut vm, "cat /tmp/root/etc/motd"),
        "welcome to loop-two (2.0.0-live)\n"
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
