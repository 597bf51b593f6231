//! ZFS tier: the build engine against a real OpenZFS (run by `scripts/zfs-tier` inside the
//! zfs-vm guest with `IB_ZFS_TIER=1`; elsewhere these tests say they are skipped).
//!
//! Three chained dataset stages on a pool backed by a sparse file: cache hits, misses after
//! a template edit and after a source file edit, `-r`, `-x`, a failing step leaving the
//! work dataset at its input snapshot, and a concurrent build refused. Step checkpoints on
//! the same world are in `real_zfs_checkpoints`.

use crate::tier;

use std::path::PathBuf;
use std::process::Command;

use image_builder::build::{self, BuildError, BuildOptions, Outcome};
use image_builder::template::{Features, PlanOptions};
use tier::{tier, Cli, ScratchPool};
use zfs::Zfs;

/// A scratch pool with the stage templates below.
pub(crate) struct World<'a> {
    pool: ScratchPool<'a>,
}

impl<'a> World<'a> {
    pub(crate) fn new(zfs: &'a Cli) -> World<'a> {
        let pool = ScratchPool::new(zfs, "ibb", 256 << 20);
        pool.write_templates(TEMPLATES);
        World { pool }
    }

    pub(crate) fn zfs(&self) -> &Cli {
        self.pool.zfs
    }

    pub(crate) fn templates(&self) -> PathBuf {
        self.pool.templates()
    }

    pub(crate) fn dataset(&self) -> String {
        self.pool.dataset()
    }

    pub(crate) fn work(&self) -> String {
        format!("{}/work/g/w", self.dataset())
    }

    pub(crate) fn output_dir(&self) -> PathBuf {
        self.pool.output_dir()
    }

    pub(crate) fn work_dir(&self) -> PathBuf {
        self.pool.mountpoint(&self.work())
    }

    pub(crate) fn opts(&self) -> BuildOptions {
        self.pool.opts()
    }

    pub(crate) fn build_with(&self, name: &str, opts: BuildOptions) -> Result<Outcome, BuildError> {
        let p = self.pool.plan("g", name, &Features::default());
        self.pool.build_plan(&p, &opts)
    }

    pub(crate) fn status(&self, name: &str) -> build::CacheStatus {
        let p = image_builder::template::plan(
            &self.templates(),
            "g",
            name,
            &Features::default(),
            &PlanOptions::default(),
        );
        build::cache_status(&p, &self.opts(), self.zfs()).unwrap()
    }

    pub(crate) fn build(&self, name: &str) -> Outcome {
        self.build_with(name, self.opts()).unwrap()
    }

    pub(crate) fn write(&self, path: &str, text: &str) {
        std::fs::write(self.templates().join(path), text).unwrap();
    }

    pub(crate) fn snapshots(&self) -> Vec<String> {
        self.zfs().snapshots(&self.work()).unwrap()
    }
}

const TEMPLATES: &[(&str, &str)] = &[
    ("files/motd", "welcome\n"),
    (
        "g/s1.json",
        r#"{ "dataset": { "name": "w", "output_snapshot": "one" }, "steps": [
            { "t": "ensure_dir", "dir": "/etc", "owner": "root", "group": "sys", "mode": "755" },
            { "t": "ensure_file", "file": "/etc/motd", "src": "motd", "owner": "root", "group": "sys", "mode": "644" },
            { "t": "ensure_file", "file": "/etc/a", "contents": "a\n", "owner": "root", "group": "root", "mode": "600" } ] }"#,
    ),
    (
        "g/s2.json",
        r#"{ "dataset": { "name": "w", "input_snapshot": "one", "output_snapshot": "two" }, "steps": [
            { "t": "ensure_file", "file": "/etc/b", "contents": "b\n", "owner": "root", "group": "root", "mode": "644" },
            { "t": "remove_files", "file": "/etc/a" } ] }"#,
    ),
    (
        "g/s3.json",
        r#"{ "dataset": { "name": "w", "input_snapshot": "two" }, "steps": [
            { "t": "pack_tar", "name": "w.tar.gz" } ] }"#,
    ),
    (
        "g/c1.json",
        r#"{ "dataset": { "name": "c", "output_snapshot": "one" }, "steps": [
            { "t": "ensure_file", "file": "/a", "contents": "a\n", "owner": "root", "group": "root", "mode": "644" } ] }"#,
    ),
    (
        "g/c2.json",
        r#"{ "dataset": { "name": "c", "input_snapshot": "one", "output_snapshot": "two" }, "steps": [
            { "t": "ensure_file", "file": "/b", "contents": "b\n", "owner": "root", "group": "root", "mode": "644" } ] }"#,
    ),
    (
        "g/c3.json",
        r#"{ "dataset": { "name": "c", "input_snapshot": "two", "output_snapshot": "three" }, "steps": [
            { "t": "ensure_file", "file": "/c", "contents": "c\n", "owner": "root", "group": "root", "mode": "644" } ] }"#,
    ),
    (
        "g/s2fail.json",
        r#"{ "dataset": { "name": "w", "input_snapshot": "one", "output_snapshot": "two" }, "steps": [
            { "t": "ensure_file", "file": "/etc/b", "contents": "b\n", "owner": "root", "group": "root", "mode": "644" },
            { "t": "ensure_perms", "path": "/does/not/exist", "owner": "root", "group": "root", "mode": "644" } ] }"#,
    ),
];

#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn three_chained_stages_then_cache_hits_and_misses() {
    let Some(zfs) = tier() else { return };
    let w = World::new(&zfs);
    assert_eq!(w.build("s1"), Outcome::Built);
    assert_eq!(w.build("s2"), Outcome::Built);
    assert_eq!(w.build("s3"), Outcome::Built);
    let snaps = w.snapshots();
    assert_eq!(
        snaps,
        [format!("{}@one", w.work()), format!("{}@two", w.work())]
    );
    for s in &snaps {
        let key = zfs.get(s, "org.illumos.image-builder:key").unwrap();
        assert_eq!(
            key.as_deref().map(str::len),
            Some(64),
            "{s} has no cache key"
        );
    }
    let tar = w.output_dir().join("w.tar.gz");
    let list = Command::new("tar").arg("tzf").arg(&tar).output().unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(list.lines().any(|l| l == "etc/b"), "{list}");
    assert!(!list.lines().any(|l| l == "etc/a"), "{list}");
    let sums = std::fs::read_to_string(w.output_dir().join("SHA256SUMS")).unwrap();
    assert!(sums.ends_with("  w.tar.gz\n"), "{sums}");
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.output_dir().join("g-s3.build.json")).unwrap())
            .unwrap();
    assert_eq!(rec["outputs"], serde_json::json!(["w.tar.gz"]));

    // Nothing changed: both stages come from the cache.
    assert_eq!(w.build("s1"), Outcome::Cached);
    assert_eq!(w.build("s2"), Outcome::Cached);
    assert!(matches!(w.status("s2"), build::CacheStatus::Hit(_)));
    // A source file edit invalidates stage 1, and through its new snapshot, stage 2.
    w.write("files/motd", "changed\n");
    assert_eq!(
        w.status("s1"),
        build::CacheStatus::Miss(
            "the template, its files, its features or its input changed".into()
        )
    );
    assert_eq!(w.build("s1"), Outcome::Built);
    assert_eq!(
        std::fs::read_to_string(w.work_dir().join("etc/motd")).unwrap(),
        "changed\n"
    );
    assert_eq!(w.build("s2"), Outcome::Built);
    assert_eq!(w.build("s2"), Outcome::Cached);
    // A template edit invalidates only its own stage.
    let s2 = std::fs::read_to_string(w.templates().join("g/s2.json")).unwrap();
    w.write("g/s2.json", &s2.replace("\"b\\n\"", "\"b2\\n\""));
    assert_eq!(w.build("s1"), Outcome::Cached);
    assert_eq!(w.build("s2"), Outcome::Built);
    assert_eq!(
        std::fs::read_to_string(w.work_dir().join("etc/b")).unwrap(),
        "b2\n"
    );
    // -r rebuilds a current stage.
    assert_eq!(
        w.build_with(
            "s2",
            BuildOptions {
                reset: true,
                ..w.opts()
            }
        )
        .unwrap(),
        Outcome::Built
    );
    // -x starts over: the later stage's snapshot is gone with the old work dataset.
    assert_eq!(
        w.build_with(
            "s1",
            BuildOptions {
                fullreset: true,
                ..w.opts()
            }
        )
        .unwrap(),
        Outcome::Built
    );
    assert_eq!(w.snapshots(), [format!("{}@one", w.work())]);
}

#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn a_failing_step_leaves_the_work_dataset_at_its_input_snapshot() {
    let Some(zfs) = tier() else { return };
    let w = World::new(&zfs);
    w.build("s1");
    let e = w.build_with("s2fail", w.opts()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("step 1 (ensure_perms, g/s2fail.json:steps[1]) failed: "),
        "{e}"
    );
    assert_eq!(w.snapshots(), [format!("{}@one", w.work())]);
    assert!(
        !w.work_dir().join("etc/b").exists(),
        "the failed stage's writes were not rolled back"
    );
    assert!(w.work_dir().join("etc/a").exists());
    assert!(
        !zfs.exists(&format!("{}/tmp/g/s2fail", w.dataset()))
            .unwrap(),
        "scratch dataset left behind"
    );
    let journals = w.output_dir().join(".image-builder/journals");
    assert_eq!(
        std::fs::read_dir(&journals).unwrap().count(),
        0,
        "journal not emptied"
    );
    // The stage builds normally afterwards.
    assert_eq!(w.build("s2"), Outcome::Built);
}

#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn a_second_concurrent_build_of_the_same_work_dataset_is_refused() {
    let Some(zfs) = tier() else { return };
    let w = World::new(&zfs);
    w.build("s1");
    let locks = w.output_dir().join(".image-builder/locks");
    let held = build::lock::Lock::acquire(&locks, &w.work()).unwrap();
    let e = w.build_with("s2", w.opts()).unwrap_err();
    assert!(matches!(e, BuildError::Locked { .. }), "{e}");
    drop(held);
    assert_eq!(w.build("s2"), Outcome::Built);
}

#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn a_stage_snapshot_made_without_a_cache_key_is_kept_until_x_or_r() {
    let Some(zfs) = tier() else { return };
    let w = World::new(&zfs);
    // A work dataset and stage snapshots as another tool leaves them: plain `zfs create`
    // and `zfs snapshot`, no cache key.
    let work = w.work();
    zfs.create(&work, &zfs::CreateOptions::new().parents())
        .unwrap();
    // What stage s2 expects of stage s1's tree.
    std::fs::create_dir_all(w.work_dir().join("etc")).unwrap();
    std::fs::write(w.work_dir().join("etc/a"), "a\n").unwrap();
    zfs.snapshot(&format!("{work}@one"), &[]).unwrap();
    zfs.snapshot(&format!("{work}@two"), &[]).unwrap();
    std::fs::write(w.work_dir().join("marker"), "kept\n").unwrap();
    zfs.snapshot(&format!("{work}@three"), &[]).unwrap();
    let before = w.snapshots();

    let e = w.build_with("s1", w.opts()).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{work}@one was built elsewhere"))
            && e.contains("pass -x to rebuild"),
        "{e}"
    );
    let e = w
        .build_with(
            "s1",
            BuildOptions {
                reset: true,
                ..w.opts()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("-r cannot: the stage has no input snapshot"),
        "{e}"
    );
    let e = w.build_with("s2", w.opts()).unwrap_err().to_string();
    assert!(
        e.contains(&format!("or -r to rebuild this stage from {work}@one")),
        "{e}"
    );
    assert_eq!(
        w.snapshots(),
        before,
        "nothing was destroyed or rolled back"
    );
    assert_eq!(
        std::fs::read_to_string(w.work_dir().join("marker")).unwrap(),
        "kept\n"
    );
    assert!(matches!(w.status("s1"), build::CacheStatus::Miss(m) if m.contains("built elsewhere")));

    // -r rebuilds the later stage from its input snapshot, as the reference does.
    assert_eq!(
        w.build_with(
            "s2",
            BuildOptions {
                reset: true,
                ..w.opts()
            }
        )
        .unwrap(),
        Outcome::Built
    );
    assert_eq!(
        w.snapshots(),
        [format!("{work}@one"), format!("{work}@two")]
    );
    // -x rebuilds the first.
    assert_eq!(
        w.build_with(
            "s1",
            BuildOptions {
                fullreset: true,
                ..w.opts()
            }
        )
        .unwrap(),
        Outcome::Built
    );
    assert_eq!(w.build("s1"), Outcome::Cached);
}

/// A runner that runs commands for real and keeps their lines.
#[derive(Default)]
struct Counting {
    inner: runner::SystemRunner,
    lines: std::sync::Mutex<Vec<String>>,
}

impl runner::Runner for Counting {
    fn output(&self, cmd: &runner::Cmd) -> Result<runner::Output, runner::RunError> {
        self.lines.lock().unwrap().push(cmd.display());
        self.inner.output(cmd)
    }
}

#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn an_unchanged_three_stage_chain_rebuilds_in_at_most_two_zfs_commands_per_stage() {
    let Some(zfs) = tier() else { return };
    let w = World::new(&zfs);
    for s in ["c1", "c2", "c3"] {
        assert_eq!(w.build(s), Outcome::Built, "{s}");
    }
    let counting = Counting::default();
    let cli = zfs::ZfsCli::new(&counting, zfs::ZfsTools::in_dir("/usr/sbin"));
    let env = build::Env {
        host: image_builder::host::Host::Linux,
        runner: &counting,
        zfs: &cli,
    };
    let work = format!("{}/work/g/c", w.dataset());
    for s in ["c1", "c2", "c3"] {
        counting.lines.lock().unwrap().clear();
        let p = w.pool.plan("g", s, &Features::default());
        let mut hit = false;
        let r = build::build(&p, &w.opts(), &env, &mut |e| {
            hit |= matches!(e, build::Event::CacheHit { .. })
        });
        let lines = counting.lines.lock().unwrap().clone();
        assert_eq!((r.unwrap(), hit), (Outcome::Cached, true), "{s}: {lines:?}");
        assert!(lines.len() <= 2, "{s}: {lines:?}");
        assert!(
            lines[0].starts_with("/usr/sbin/zfs list -H -p -o name,type,mountpoint,mounted,")
                && lines[0].ends_with(&format!(" -d 1 {} {work}", w.dataset())),
            "{s}: {lines:?}"
        );
        // Only the newest snapshot's stage may reset the tree.
        if s != "c3" {
            assert_eq!(lines.len(), 1, "{s}: {lines:?}");
        }
        eprintln!("{s}: {} command(s): {lines:?}", lines.len());
    }
    // A write to the tree after the newest snapshot is rolled back by its stage.
    std::fs::write(w.pool.mountpoint(&work).join("d"), "d\n").unwrap();
    // zpool-sync(8): written counts what is on disk; force the transaction group out.
    let synced = Command::new("zpool")
        .args(["sync", &w.pool.name])
        .status()
        .unwrap();
    assert!(synced.success());
    counting.lines.lock().unwrap().clear();
    let p = w.pool.plan("g", "c3", &Features::default());
    assert_eq!(
        build::build(&p, &w.opts(), &env, &mut |_| {}).unwrap(),
        Outcome::Cached
    );
    let lines = counting.lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1], format!("/usr/sbin/zfs rollback -r {work}@three"));
    assert!(!w.pool.mountpoint(&work).join("d").exists());
}
