//! The native steps on real files in temporary image roots: what they write, that a second
//! run changes nothing, and that nothing outside the image root is touched.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use image_builder::host::Host;
use image_builder::steps::{DevfsSetup, SmfSeeding, StepCx, StepError};
use image_builder::template::load::parse_step;
use runner::Recorder;
use tempfile::TempDir;

struct World {
    top: TempDir,
    root: confine::Root,
    rec: Recorder,
    zfs: zfs::ZfsCli<Recorder>,
    external: Vec<PathBuf>,
}

impl World {
    fn new() -> World {
        let top = tempfile::tempdir().unwrap();
        for d in [
            "root",
            "templates/g/files",
            "templates/files",
            "output",
            "tmp",
            "ext",
            "outside",
        ] {
            std::fs::create_dir_all(top.path().join(d)).unwrap();
        }
        let root = confine::Root::open(top.path().join("root")).unwrap();
        let external = vec![top.path().join("ext")];
        World {
            top,
            root,
            rec: Recorder::new(),
            zfs: zfs::ZfsCli::new(
                Recorder::new(),
                zfs::ZfsTools::new("/usr/sbin/zfs", "/usr/sbin/zpool"),
            ),
            external,
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.top.path().join(rel)
    }

    fn img(&self, image_path: &str) -> PathBuf {
        self.p("root").join(image_path.trim_start_matches('/'))
    }

    fn run(&self, json: &str) -> Result<(), StepError> {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        let step = parse_step(&v).unwrap();
        let templates = self.p("templates");
        let output = self.p("output");
        let tmp = self.p("tmp");
        let cx = StepCx {
            host: Host::Illumos,
            runner: &self.rec,
            zfs: &self.zfs,
            root: &self.root,
            template_root: &templates,
            group: "g",
            external: &self.external,
            output_dir: &output,
            tmp_dir: &tmp,
            svccfg: Path::new("/usr/sbin/svccfg"),
            smf: SmfSeeding::Import,
            devfs: DevfsSetup::Devfsadm,
            source_date_epoch: Some(1_700_000_000),
            pool: None,
            tag: "test".into(),
        };
        step.kind.execute(&cx)
    }

    /// Runs a step twice and checks the second run changed nothing under the root, not
    /// even a file's ctime.
    fn run_idempotent(&self, json: &str) {
        self.run(json).unwrap();
        let before = snapshot(&self.p("root"));
        self.run(json).unwrap();
        assert_eq!(
            before,
            snapshot(&self.p("root")),
            "second run of {json} changed the image"
        );
    }

    /// Runs a step twice and checks the second run left the same tree (content, modes,
    /// owners, sizes), though it may have rewritten files.
    fn run_same_tree(&self, json: &str) {
        self.run(json).unwrap();
        let strip = |v: Vec<Entry>| {
            v.into_iter()
                .map(|e| (e.0, e.1, e.2, e.3, e.4))
                .collect::<Vec<_>>()
        };
        let before = strip(snapshot(&self.p("root")));
        self.run(json).unwrap();
        assert_eq!(
            before,
            strip(snapshot(&self.p("root"))),
            "second run of {json} changed the tree"
        );
    }
}

type Entry = (PathBuf, u32, u32, u32, u64, i64, i64);

/// Path, kind and mode, owner, group, size, ctime of everything under `dir`.
fn snapshot(dir: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            out.push((
                e.path(),
                m.mode(),
                m.uid(),
                m.gid(),
                m.size(),
                m.ctime(),
                m.ctime_nsec(),
            ));
        }
    }
    out.sort();
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid())
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn ensure_dir_file_symlink_and_perms() {
    let w = World::new();
    w.run_idempotent(
        r#"{ "t": "ensure_dir", "dir": "/etc", "owner": "root", "group": "sys", "mode": "755" }"#,
    );
    assert_eq!(mode(&w.img("/etc")), 0o755);
    std::fs::write(w.p("templates/files/hosts"), "127.0.0.1 localhost\n").unwrap();
    std::fs::write(w.p("templates/g/files/hosts"), "::1 localhost\n").unwrap();
    w.run_idempotent(r#"{ "t": "ensure_file", "file": "/etc/hosts", "src": "hosts", "owner": "root", "group": "sys", "mode": "644" }"#);
    // The group's files directory wins over the global one.
    assert_eq!(
        std::fs::read_to_string(w.img("/etc/hosts")).unwrap(),
        "::1 localhost\n"
    );
    w.run_idempotent(r#"{ "t": "ensure_file", "file": "/etc/motd", "contents": "costs $5\n", "owner": "3", "group": "3", "mode": "4711" }"#);
    assert_eq!(
        std::fs::read_to_string(w.img("/etc/motd")).unwrap(),
        "costs $5\n"
    );
    if is_root() {
        assert_eq!(owner(&w.img("/etc/motd")), (3, 3));
        assert_eq!(owner(&w.img("/etc/hosts")), (0, 3));
        // setuid survives the chown because the mode is set after it.
        assert_eq!(mode(&w.img("/etc/motd")), 0o4711);
    }
    w.run_idempotent(r#"{ "t": "ensure_file", "file": "/etc/hosts.copy", "imagesrc": "/etc/hosts", "owner": "root", "group": "root", "mode": "600" }"#);
    assert_eq!(
        std::fs::read_to_string(w.img("/etc/hosts.copy")).unwrap(),
        "::1 localhost\n"
    );
    std::fs::write(w.p("ext/bin"), "binary").unwrap();
    w.run_idempotent(r#"{ "t": "ensure_file", "file": "/etc/bin", "extsrc": "bin", "owner": "root", "group": "root", "mode": "755" }"#);
    w.run_idempotent(r#"{ "t": "ensure_symlink", "link": "/etc/localtime", "target": "../usr/share/zoneinfo/UTC", "owner": "root", "group": "root" }"#);
    assert_eq!(
        std::fs::read_link(w.img("/etc/localtime")).unwrap(),
        Path::new("../usr/share/zoneinfo/UTC")
    );
    w.run(r#"{ "t": "ensure_symlink", "link": "/etc/localtime", "target": "other", "owner": "root", "group": "root" }"#).unwrap();
    assert_eq!(
        std::fs::read_link(w.img("/etc/localtime")).unwrap(),
        Path::new("other")
    );
    w.run_idempotent(r#"{ "t": "ensure_perms", "path": "/etc/hosts", "owner": "root", "group": "root", "mode": "1777" }"#);
    assert_eq!(mode(&w.img("/etc/hosts")), 0o1777);
}

#[test]
fn owners_resolve_through_the_image_passwd_and_group() {
    let w = World::new();
    std::fs::create_dir(w.img("/etc")).unwrap();
    std::fs::write(
        w.img("/etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nsvc:x:123:0::/:\n",
    )
    .unwrap();
    std::fs::write(w.img("/etc/group"), "root::0:\nsvcgrp::456:\n").unwrap();
    w.run(r#"{ "t": "ensure_file", "file": "/f", "contents": "", "owner": "svc", "group": "svcgrp", "mode": "640" }"#).unwrap();
    if is_root() {
        assert_eq!(owner(&w.img("/f")), (123, 456));
    }
    let err = w
        .run(r#"{ "t": "ensure_file", "file": "/g", "contents": "", "owner": "daemon", "group": "root", "mode": "640" }"#)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown user \"daemon\": not in the image's /etc/passwd"
    );
}

#[test]
fn remove_files_by_file_dir_and_pattern_and_missing_is_fine() {
    let w = World::new();
    for f in ["a/x.orig", "a/b/y.orig", "a/keep.txt", "tree/t/u"] {
        std::fs::create_dir_all(w.img(f).parent().unwrap()).unwrap();
        std::fs::write(w.img(f), "x").unwrap();
    }
    std::os::unix::fs::symlink(w.p("outside"), w.img("/a/link")).unwrap();
    std::fs::write(w.p("outside/z.orig"), "host").unwrap();
    w.run(r#"{ "t": "remove_files", "pattern": "*.orig" }"#)
        .unwrap();
    assert!(!w.img("/a/x.orig").exists() && !w.img("/a/b/y.orig").exists());
    assert!(w.img("/a/keep.txt").exists());
    assert!(
        w.p("outside/z.orig").exists(),
        "a symlink in the image led the pattern outside"
    );
    w.run(r#"{ "t": "remove_files", "dir": "/tree" }"#).unwrap();
    assert!(!w.img("/tree").exists());
    w.run(r#"{ "t": "remove_files", "file": "/a/keep.txt" }"#)
        .unwrap();
    w.run(r#"{ "t": "remove_files", "file": "/a/keep.txt" }"#)
        .unwrap();
    w.run(r#"{ "t": "remove_files", "dir": "/nonexistent" }"#)
        .unwrap();
}

/// A file system mounted at a path, unmounted when dropped (also when the test fails).
struct Mounted(PathBuf);

impl Mounted {
    fn tmpfs(at: &Path) -> Mounted {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success(), "mount -t tmpfs at {}", at.display());
        Mounted(at.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The pattern search does not descend into another file system mounted inside the image
/// (the illumos image-builder walks with walkdir's `same_file_system(true)`).
#[test]
fn remove_files_pattern_stays_on_the_image_file_system() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let w = World::new();
    std::fs::create_dir_all(w.img("/var/a")).unwrap();
    std::fs::write(w.img("/var/a/x.orig"), "x").unwrap();
    let mnt = Mounted::tmpfs(&w.img("/var/mnt"));
    std::fs::create_dir_all(w.img("/var/mnt/deep")).unwrap();
    std::fs::write(w.img("/var/mnt/y.orig"), "y").unwrap();
    std::fs::write(w.img("/var/mnt/deep/z.orig"), "z").unwrap();
    w.run(r#"{ "t": "remove_files", "pattern": "*.orig" }"#)
        .unwrap();
    assert!(!w.img("/var/a/x.orig").exists());
    assert!(
        w.img("/var/mnt/y.orig").exists(),
        "the search entered a mount"
    );
    assert!(w.img("/var/mnt/deep/z.orig").exists());
    drop(mnt);
}

/// Missing parents are created (as the illumos image-builder's recursive create does),
/// with the leaf's mode less group/other write and no special bits; owner, group and mode
/// go to the leaf only; existing parents are left alone.
#[test]
fn ensure_dir_creates_missing_parents() {
    let w = World::new();
    std::fs::create_dir(w.img("/opt")).unwrap();
    std::fs::set_permissions(w.img("/opt"), std::fs::Permissions::from_mode(0o700)).unwrap();
    w.run_idempotent(
        r#"{ "t": "ensure_dir", "dir": "/opt/oxide/a/b", "owner": "3", "group": "3", "mode": "1777" }"#,
    );
    assert_eq!(mode(&w.img("/opt/oxide/a/b")), 0o1777);
    assert_eq!(mode(&w.img("/opt/oxide/a")), 0o755);
    assert_eq!(mode(&w.img("/opt/oxide")), 0o755);
    assert_eq!(
        mode(&w.img("/opt")),
        0o700,
        "an existing parent was changed"
    );
    w.run(
        r#"{ "t": "ensure_dir", "dir": "/p/q", "owner": "root", "group": "root", "mode": "750" }"#,
    )
    .unwrap();
    assert_eq!(mode(&w.img("/p")), 0o750);
    assert_eq!(mode(&w.img("/p/q")), 0o750);
    if is_root() {
        assert_eq!(owner(&w.img("/opt/oxide/a/b")), (3, 3));
        assert_eq!(owner(&w.img("/opt/oxide/a")), (0, 0));
        assert_eq!(owner(&w.img("/opt/oxide")), (0, 0));
    }
    // A parent that is a file is an error naming the path, not a panic.
    std::fs::write(w.img("/file"), "x").unwrap();
    let e = w
        .run(r#"{ "t": "ensure_dir", "dir": "/file/sub", "owner": "root", "group": "root", "mode": "755" }"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("/file"), "{e}");
}

#[test]
fn writes_through_hostile_symlinks_stay_inside_the_root() {
    let w = World::new();
    let outside = w.p("outside");
    std::fs::create_dir(w.img("/etc")).unwrap();
    // An absolute symlink inside the image names the image's own tree, never the host's.
    std::os::unix::fs::symlink(&outside, w.img("/etc/abs")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../..", w.img("/etc/up")).unwrap();
    let step = |f: &str| {
        format!(
            r#"{{ "t": "ensure_file", "file": "{f}", "contents": "escaped", "owner": "root", "group": "root", "mode": "644" }}"#
        )
    };
    let _ = w.run(&step("/etc/abs/canary"));
    let canary = outside.file_name().unwrap().to_string_lossy().into_owned();
    let _ = w.run(&step(&format!(
        "/etc/up/{}/outside/canary2",
        w.top.path().strip_prefix("/").unwrap().display()
    )));
    let _ = w.run(&step(&format!("/../../{canary}/canary3")));
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "something was written outside the image root"
    );
}

#[test]
fn shadow_sets_the_hash_only_when_it_changes() {
    let w = World::new();
    std::fs::create_dir(w.img("/etc")).unwrap();
    std::fs::write(
        w.img("/etc/shadow"),
        "root:NP:6445::::::\ndaemon:NP:6445::::::\n",
    )
    .unwrap();
    w.run_idempotent(r#"{ "t": "shadow", "username": "root", "password": "$5$salt$hash" }"#);
    assert_eq!(
        std::fs::read_to_string(w.img("/etc/shadow")).unwrap(),
        "root:$5$salt$hash:6445::::::\ndaemon:NP:6445::::::\n"
    );
    assert_eq!(mode(&w.img("/etc/shadow")), 0o400);
    let e = w
        .run(r#"{ "t": "shadow", "username": "nobody", "password": "x" }"#)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "found 0 entries for user \"nobody\" in /etc/shadow, expected exactly 1"
    );
}

#[test]
fn assemble_files_concatenates_sorted_trimmed_fragments() {
    let w = World::new();
    std::fs::create_dir_all(w.img("/etc/system.d")).unwrap();
    std::fs::write(w.img("/etc/system.d/b"), "\nset b=1\n\n").unwrap();
    std::fs::write(w.img("/etc/system.d/a"), "set a=1").unwrap();
    std::fs::write(w.img("/etc/system.d/empty"), "  \n").unwrap();
    w.run_idempotent(r#"{ "t": "assemble_files", "dir": "/etc/system.d", "output": "/etc/system.d/.self-assembly" }"#);
    assert_eq!(
        std::fs::read_to_string(w.img("/etc/system.d/.self-assembly")).unwrap(),
        "set a=1\nset b=1\n"
    );
}

#[test]
fn digest_matches_the_coreutils_tools_and_gzip_round_trips() {
    let w = World::new();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(w.p("output/ramdisk.ufs"), &data).unwrap();
    std::fs::create_dir(w.img("/boot")).unwrap();
    for (alg, tool) in [
        ("md5", "md5sum"),
        ("sha1", "sha1sum"),
        ("sha256", "sha256sum"),
    ] {
        w.run_idempotent(&format!(r#"{{ "t": "digest", "algorithm": "{alg}", "src": "ramdisk.ufs", "target": "/boot/{alg}", "owner": "root", "group": "root", "mode": "444" }}"#));
        let out = Command::new(tool)
            .arg(w.p("output/ramdisk.ufs"))
            .output()
            .unwrap();
        let want = String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
            + "\n";
        assert_eq!(
            std::fs::read_to_string(w.img(&format!("/boot/{alg}"))).unwrap(),
            want,
            "{alg}"
        );
    }
    std::fs::write(w.img("/boot/archive.gz"), "old").unwrap();
    w.run(r#"{ "t": "gzip", "src": "ramdisk.ufs", "target": "/boot/archive.gz", "owner": "root", "group": "root", "mode": "444" }"#).unwrap();
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(w.img("/boot/archive.gz"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, data);
    assert_eq!(mode(&w.img("/boot/archive.gz")), 0o444);
}

#[test]
fn pack_then_unpack_reproduces_the_tree() {
    let w = World::new();
    std::fs::create_dir_all(w.img("/usr/bin")).unwrap();
    std::fs::write(w.img("/usr/bin/tool"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        w.img("/usr/bin/tool"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::os::unix::fs::symlink("usr/bin", w.img("/bin")).unwrap();
    w.run(r#"{ "t": "pack_tar", "name": "base.tar.gz" }"#)
        .unwrap();
    let first = std::fs::read(w.p("output/base.tar.gz")).unwrap();
    w.run(r#"{ "t": "pack_tar", "name": "base.tar.gz" }"#)
        .unwrap();
    assert_eq!(
        first,
        std::fs::read(w.p("output/base.tar.gz")).unwrap(),
        "packing twice differs"
    );
    let w2 = World::new();
    std::fs::copy(w.p("output/base.tar.gz"), w2.p("output/base.tar.gz")).unwrap();
    w2.run_same_tree(r#"{ "t": "unpack_tar", "name": "base.tar.gz" }"#);
    assert_eq!(
        std::fs::read_link(w2.img("/bin")).unwrap(),
        Path::new("usr/bin")
    );
    assert_eq!(mode(&w2.img("/usr/bin/tool")), 0o4755);
    w2.run(r#"{ "t": "unpack_tar", "name": "base.tar.gz", "into_tmp": true }"#)
        .unwrap();
    w2.run(r#"{ "t": "ensure_file", "file": "/tool2", "tarsrc": "/usr/bin/tool", "owner": "root", "group": "root", "mode": "755" }"#).unwrap();
    assert_eq!(
        std::fs::read_to_string(w2.img("/tool2")).unwrap(),
        "#!/bin/sh\n"
    );
    let e = w2
        .run(r#"{ "t": "unpack_tar", "name": "missing.tar" }"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("archive ")
            && e.ends_with(
                "not found in the output directory (build the stage that packs it first)"
            ),
        "{e}"
    );
}

#[test]
fn pack_and_unpack_report_progress_to_the_installed_sink() {
    use std::sync::Mutex;
    static SEEN: Mutex<Vec<(String, u64, u64)>> = Mutex::new(Vec::new());
    image_builder::progress::install(Box::new(|what, done, total| {
        SEEN.lock().unwrap().push((what.to_string(), done, total));
    }));
    let w = World::new();
    std::fs::create_dir_all(w.img("/data")).unwrap();
    std::fs::write(w.img("/data/blob"), vec![1u8; 3 << 20]).unwrap();
    w.run(r#"{ "t": "pack_tar", "name": "progress.tar.gz" }"#)
        .unwrap();
    let seen = SEEN.lock().unwrap().clone();
    let mine: Vec<_> = seen
        .iter()
        .filter(|(w, _, _)| w == "progress.tar.gz")
        .collect();
    assert!(!mine.is_empty(), "no progress reported");
    let last = mine.last().unwrap();
    assert_eq!(last.1, last.2, "progress did not reach its total: {mine:?}");
    assert!(last.2 >= 3 << 20);
}
