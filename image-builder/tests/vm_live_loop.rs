//! The live plugin loop of the development image, in a real QEMU guest (TCG), done the way
//! a developer does it: a checkout shared at `/repo`, sysconfig built there with cargo,
//! the daemon and its plugins run from `/repo/target/debug`; then a plugin's source is
//! edited, cargo rebuilds, the daemon runs again over the serial console and the guest
//! shows the new behaviour. No image is rebuilt.
//!
//! The checkout is a scratch copy of this workspace (its manifests, lock file and member
//! crates; never `target/`) at a stable path under the cargo target directory, with its
//! own `target/`: the edit never touches the real sources, the builds never touch the
//! outer build's binaries, and a second run is incremental. Every run copies the sources
//! again (only files whose contents differ are written, so cargo's fingerprints see exactly
//! what changed), so an edit left by an earlier run cannot leak into this one.
//!
//! sysconfig and its plugins are linked against the host's C library, which the small
//! test guest lacks: the directories the host's dynamic loader takes them from are shared
//! read-only into the guest at the same paths. Without the guest (`scripts/vm-guest
//! setup`) or QEMU the test says it is skipped, unless `IB_REQUIRE_GUESTS` is set: then it
//! fails.

use crate::guest;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image_builder::vm::{Accel, DirectBoot, Firmware, Network, QemuVm, RunOptions, Share, VmSpec};
use runner::{Cmd, Runner, SystemRunner};

const TEST: &str = "sysconfig_plugin_loop_in_a_guest";
const PROMPT: &str = "ib-guest# ";
/// Generous: two cores shared with other work, and TCG.
const BOOT: Duration = Duration::from_secs(180);
const CMD: Duration = Duration::from_secs(120);
/// A cold build compiles every dependency of sysconfig on a busy machine.
const BUILD: Duration = Duration::from_secs(1800);

/// The plugin source the test edits, relative to the checkout.
const PLUGIN_SRC: &str = "sysconfig/src/plugins/hostname.rs";

/// The cargo running this test (cargo sets `CARGO` for the tests it runs).
fn cargo() -> PathBuf {
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| "cargo".into())
}

/// The runner clears the environment; cargo needs its toolchain, its home (the registry
/// cache the outer build filled, and its configuration), and the flags the outer build
/// used. Where build products go is given on the command line, never inherited.
fn toolchain_env(mut cmd: Cmd) -> Cmd {
    const NAMES: &[&str] = &[
        "PATH",
        "HOME",
        "TMPDIR",
        "CARGO_HOME",
        "RUSTFLAGS",
        "RUSTC",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_JOBS",
        "CARGO_BUILD_RUSTC_WRAPPER",
    ];
    const PREFIXES: &[&str] = &[
        "RUSTUP_",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
    ];
    for (k, v) in std::env::vars_os() {
        let Some(name) = k.to_str() else { continue };
        if NAMES.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p)) {
            cmd = cmd.env(&k, v);
        }
    }
    cmd
}

/// Runs cargo with `args` in `dir`; on failure the whole of its standard error is shown.
/// Its progress lines stay on and plain whatever cargo's configuration says: they tell
/// which crates it compiled.
fn run_cargo(dir: &Path, args: &[&str]) -> runner::Output {
    let cmd = toolchain_env(Cmd::new(cargo()))
        .env("CARGO_TERM_QUIET", "false")
        .env("CARGO_TERM_COLOR", "never")
        .args(args)
        .cwd(dir)
        .timeout(BUILD);
    let out = SystemRunner::new()
        .output(&cmd)
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let hint = if stderr.contains("offline") {
        " (cargo runs offline here: fill the registry cache once with `cargo fetch --locked`)"
    } else {
        ""
    };
    assert!(
        out.success(),
        "`{}` in {} failed ({}){hint}:\n{stderr}",
        cmd.display(),
        dir.display(),
        out.status_text(),
    );
    out
}

/// The crates cargo says it compiled, from its standard error.
fn compiled(out: &runner::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("Compiling "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// What of the workspace a checkout needs for cargo: the manifests and lock file at the
/// top, cargo's and rustup's configuration if the workspace has them, and each member
/// crate's directory (as `cargo metadata` lists them), all relative to the top.
fn checkout_entries(workspace: &Path) -> Vec<PathBuf> {
    let out = run_cargo(
        workspace,
        &[
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ],
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata");
    let root = PathBuf::from(meta["workspace_root"].as_str().expect("workspace_root"));
    let mut entries: Vec<PathBuf> = [
        "Cargo.toml",
        "Cargo.lock",
        ".cargo",
        "rust-toolchain",
        "rust-toolchain.toml",
    ]
    .iter()
    .map(PathBuf::from)
    .filter(|p| root.join(p).exists())
    .collect();
    for p in meta["packages"].as_array().expect("packages") {
        let manifest = Path::new(p["manifest_path"].as_str().expect("manifest_path"));
        let dir = manifest
            .parent()
            .and_then(|d| d.strip_prefix(&root).ok())
            .unwrap_or_else(|| {
                panic!(
                    "member {} is outside {}",
                    manifest.display(),
                    root.display()
                )
            });
        if !dir.as_os_str().is_empty() {
            entries.push(dir.to_path_buf());
        }
    }
    assert!(
        entries.iter().any(|e| e == Path::new("sysconfig")),
        "no sysconfig member in {}: {entries:?}",
        root.display()
    );
    entries
}

/// A file under `src` to copy, or a directory to recurse into; build output directories
/// (cargo marks them with `CACHEDIR.TAG`) and `skip` (the scratch checkout) are left out.
fn walk(
    src: &Path,
    rel: &Path,
    skip: &Path,
    files: &mut BTreeSet<PathBuf>,
    dirs: &mut BTreeSet<PathBuf>,
) {
    let path = src.join(rel);
    if skip.starts_with(&path) {
        return;
    }
    let Ok(meta) = std::fs::metadata(&path) else {
        return;
    };
    if meta.is_file() {
        files.insert(rel.to_path_buf());
    } else if meta.is_dir() && !path.join("CACHEDIR.TAG").exists() {
        dirs.insert(rel.to_path_buf());
        let mut names: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            walk(src, &rel.join(n), skip, files, dirs);
        }
    }
}

/// Makes `dest` hold what `src`'s `entries` hold: a file is written only when its contents
/// differ (so it gets a new modification time exactly when cargo must rebuild from it), and
/// whatever else is in `dest`, but for `keep`, is removed.
fn mirror(src: &Path, entries: &[PathBuf], dest: &Path, keep: &[&str]) {
    let (mut files, mut dirs) = (BTreeSet::new(), BTreeSet::new());
    for e in entries {
        walk(src, e, dest, &mut files, &mut dirs);
    }
    std::fs::create_dir_all(dest).unwrap();
    // Stale entries first, so a file that became a directory (or the reverse) is replaced.
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(dest.join(&rel)).unwrap().flatten() {
            let r = rel.join(e.file_name());
            if rel.as_os_str().is_empty() && keep.iter().any(|k| Path::new(k) == r) {
                continue;
            }
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir && dirs.contains(&r) {
                stack.push(r);
            } else if is_dir {
                std::fs::remove_dir_all(e.path()).unwrap();
            } else if !files.contains(&r) {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
    }
    for d in &dirs {
        std::fs::create_dir_all(dest.join(d)).unwrap();
    }
    for f in &files {
        let want = std::fs::read(src.join(f)).unwrap();
        let to = dest.join(f);
        if std::fs::read(&to).ok().as_deref() != Some(want.as_slice()) {
            std::fs::write(&to, &want).unwrap();
        }
    }
}

/// The scratch checkout, held exclusively: a second run of this test (another profile,
/// another cargo) waits for the lock instead of syncing or building under this one.
struct Checkout {
    root: PathBuf,
    _lock: File,
}

impl Checkout {
    fn prepare() -> Checkout {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("live-loop");
        std::fs::create_dir_all(&base).unwrap();
        let lock = File::create(base.join("lock")).unwrap();
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .expect("lock the scratch checkout");
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the crate is in a workspace");
        let root = base.join("repo");
        let entries = checkout_entries(workspace);
        mirror(workspace, &entries, &root, &["target"]);
        Checkout { root, _lock: lock }
    }

    /// `cargo build --locked --offline -p sysconfig --bins` in the checkout, into its own
    /// `target/`: the crates cargo compiled and how long it took.
    fn build(&self) -> (Vec<String>, Duration) {
        let t = Instant::now();
        let target = self.root.join("target");
        let out = run_cargo(
            &self.root,
            &[
                "build",
                "--locked",
                "--offline",
                "-p",
                "sysconfig",
                "--bins",
                "--target-dir",
                target.to_str().expect("UTF-8 target path"),
            ],
        );
        (compiled(&out), t.elapsed())
    }

    /// Edits a source file of the checkout: each `(anchor, replacement)` must match exactly
    /// once, or the test fails saying the edit no longer fits the source.
    fn edit(&self, rel: &str, edits: &[(&str, String)]) {
        let path = self.root.join(rel);
        let mut text = std::fs::read_to_string(&path).unwrap();
        for (anchor, replacement) in edits {
            let n = text.matches(anchor).count();
            assert_eq!(
                n,
                1,
                "{rel}: the test's edit expects `{anchor}` exactly once, found {n} times; \
                 update the edit in {} to the plugin's source",
                file!()
            );
            text = text.replacen(anchor, replacement, 1);
        }
        std::fs::write(&path, text).unwrap();
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

fn run_ok(vm: &mut QemuVm, cmd: &str) -> String {
    let out = vm.console().run(cmd, CMD).unwrap();
    assert_eq!(out.status, 0, "`{cmd}` failed: {}", out.output);
    out.output
}

#[test]
fn sysconfig_plugin_loop_in_a_guest() {
    let Some(guest::Guest { vmlinux, initrd }) = guest::guest(TEST, &[]) else {
        return;
    };
    let started = Instant::now();
    let repo = Checkout::prepare();
    let (crates, took) = repo.build();
    eprintln!(
        "{TEST}: cargo build -p sysconfig in the scratch checkout: {took:?} (compiled {})",
        if crates.len() > 3 {
            format!("{} crates", crates.len())
        } else {
            format!("{crates:?}")
        }
    );
    let daemon = repo.root.join("target/debug/sysconfig");
    assert!(
        repo.root
            .join("target/debug/sysconfig-plugin-hostname")
            .is_file(),
        "cargo built no hostname plugin in {}",
        repo.root.join("target/debug").display()
    );

    // The dev image's /etc/sysconfig.toml, but for the test guest: the plugins are the
    // checkout's debug build, the desired state comes from the alternate root. Unoptimised
    // plugins under TCG on a busy host can take longer than the default describe timeout
    // (10 s) just to start.
    std::fs::write(
        repo.root.join("dev.toml"),
        "[plugins]\npath = \"/repo/target/debug\"\ndescribe_timeout_secs = 120\n\
         plan_timeout_secs = 120\n\n[state]\nonce_per_instance = false\n\n\
         [sources]\norder = [\"local\"]\ndevices = []\n",
    )
    .unwrap();
    std::fs::write(repo.root.join("desired.toml"), "hostname = \"loop-one\"\n").unwrap();

    let mut shares = vec![Share {
        tag: "repo".into(),
        path: repo.root.clone(),
        readonly: false,
    }];
    let mut cmdline = String::from("console=ttyS0 panic=-1 quiet ib.9p=repo:/repo");
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

    run_ok(
        &mut vm,
        "mkdir -p /tmp/root/etc/sysconfig.d /tmp/root/etc/inet",
    );
    let apply = "cp /repo/desired.toml /tmp/root/etc/sysconfig.d/ && \
                 /repo/target/debug/sysconfig -c /repo/dev.toml -R /tmp/root apply";

    // The shipped hostname plugin, run by the daemon from the checkout's build.
    let t = Instant::now();
    let out = run_ok(&mut vm, apply);
    eprintln!("{TEST}: first apply: {:?}", t.elapsed());
    assert!(
        out.contains("hostname: set /etc/nodename to loop-one\n"),
        "{out}"
    );
    assert!(
        !out.contains("motd"),
        "the shipped plugin knows no motd: {out}"
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

    // On the host, while the guest runs: a new desired state, and the hostname plugin
    // edited to also greet on /etc/motd, with a mark of this run so only this build can
    // pass; then cargo rebuilds what the edit touches.
    let cycle = Instant::now();
    std::fs::write(repo.root.join("desired.toml"), "hostname = \"loop-two\"\n").unwrap();
    let mark = format!(
        "run {}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    repo.edit(
        PLUGIN_SRC,
        &[
            (
                r#"format!("set /etc/nodename to {h}")"#,
                r#"format!("set /etc/nodename to {h} and greet on /etc/motd")"#.to_string(),
            ),
            (
                r#"ctx.write("/etc/nodename", format!("{h}\n").as_bytes(), 0o644, None)?;"#,
                format!(
                    r#"ctx.write("/etc/nodename", format!("{{h}}\n").as_bytes(), 0o644, None)?;
                ctx.write("/etc/motd", format!("welcome to {{h}} ({mark})\n").as_bytes(), 0o644, None)?;"#
                ),
            ),
        ],
    );
    let (crates, built) = repo.build();
    eprintln!("{TEST}: incremental cargo build after the edit: {built:?} (compiled {crates:?})");
    assert_eq!(
        crates,
        ["sysconfig"],
        "an edit of one plugin source recompiles sysconfig alone"
    );

    // In the guest: run the daemon again and see the edited plugin at work.
    let t = Instant::now();
    let out = run_ok(&mut vm, apply);
    eprintln!("{TEST}: apply after the edit: {:?}", t.elapsed());
    assert!(
        out.contains("hostname: set /etc/nodename to loop-two and greet on /etc/motd\n"),
        "{out}"
    );
    assert_eq!(run_ok(&mut vm, "cat /tmp/root/etc/nodename"), "loop-two\n");
    let hosts = run_ok(&mut vm, "cat /tmp/root/etc/inet/hosts");
    assert!(
        hosts.contains("127.0.0.1\tloop-two localhost loghost"),
        "{hosts}"
    );
    assert_eq!(
        run_ok(&mut vm, "cat /tmp/root/etc/motd"),
        format!("welcome to loop-two ({mark})\n")
    );
    eprintln!(
        "{TEST}: edit-build-restart cycle: {:?} (cargo build {built:?})",
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
    eprintln!("{TEST}: whole test: {:?}", started.elapsed());
}
