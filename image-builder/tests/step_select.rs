//! Exact command lines of `build --until`, `build --from` and `shell` on illumos, against a
//! `Recorder`: what touches the work dataset, and what is refused before anything does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image_builder::build::{self, BuildError, BuildOptions, Env, Outcome};
use image_builder::host::Host;
use image_builder::steps::SmfSeeding;
use image_builder::template::{plan, Features, PlanOptions};
use runner::{Output, Recorder};
use tempfile::TempDir;

const WORK: &str = "rpool/images/work/g/img";
/// The input snapshot's guid, as the listing below reports it.
const GUID: &str = "8815304164313270471";

struct World {
    top: TempDir,
    rec: Arc<Recorder>,
}

impl World {
    /// A later stage over `@strap` with three steps whose output snapshot `@image` does
    /// not exist; `snaps` are the work dataset's snapshots (oldest first), `props` the
    /// prefix key each checkpoint among them carries.
    fn new(snaps: &[&str], props: &[(&str, &str)]) -> World {
        World::with(snaps, props, |_, _| {})
    }

    /// [`World::new`], with `first`'s rules before the others (rules match by prefix,
    /// first added first, and `rpool/images/tmp/g/img` is a prefix of the shell's clone).
    fn with(snaps: &[&str], props: &[(&str, &str)], first: impl FnOnce(&Recorder, &Path)) -> World {
        let top = tempfile::tempdir().unwrap();
        for d in ["t/g", "output", "tmp", "work", "clone"] {
            std::fs::create_dir_all(top.path().join(d)).unwrap();
        }
        // Commands without a rule succeed with no output, as zfs(8) create, destroy,
        // snapshot, rollback, clone and mount do (they print nothing the build reads);
        // each of them is pinned by the tests below, the queries get rules.
        let rec = Arc::new(Recorder::new().allow_unmatched());
        first(&rec, top.path());
        // zfs(8) list -H -o name: one line per dataset; an absent one fails the listing.
        if !snaps.contains(&"image") {
            rec.always(
                &format!("/sbin/zfs list -H -p -o name -t all {WORK}@image"),
                Output::failed(
                    1,
                    format!("cannot open '{WORK}@image': dataset does not exist\n"),
                ),
            );
        }
        // Rules match by prefix, first added first: the snapshots before the dataset.
        let mut names: Vec<String> = snaps.iter().map(|s| format!("{WORK}@{s}")).collect();
        names.extend([
            WORK.to_string(),
            "rpool/images/output".to_string(),
            "rpool/images".to_string(),
        ]);
        for n in names {
            rec.always(
                &format!("/sbin/zfs list -H -p -o name -t all {n}"),
                Output::ok(format!("{n}\n")),
            );
        }
        // zfs(8) get -H -p -o value,source: guid is read-only and native (source "-").
        rec.always(
            &format!("/sbin/zfs get -H -p -o value,source guid {WORK}@strap"),
            Output::ok(format!("{GUID}\t-\n")),
        );
        // zfs(8) list -t snapshot -d 1 -s createtxg: the dataset's own snapshots, oldest
        // first.
        let listing: String = snaps.iter().map(|s| format!("{WORK}@{s}\n")).collect();
        rec.always(
            &format!("/sbin/zfs list -H -p -o name -t snapshot -d 1 -s createtxg {WORK}"),
            Output::ok(listing),
        );
        for (s, key) in props {
            // A user property set by `zfs snapshot -o` has source "local" (zfs(8) get).
            rec.always(
                &format!(
                    "/sbin/zfs get -H -p -o value,source org.illumos.image-builder:prefix {WORK}@{s}"
                ),
                Output::ok(format!("{key}\tlocal\n")),
            );
        }
        for (ds, dir) in [
            ("rpool/images/output", "output"),
            ("rpool/images/tmp/g/img", "tmp"),
            (WORK, "work"),
        ] {
            rec.always(
                &format!("/sbin/zfs get -H -p -o value,source mountpoint {ds}"),
                Output::ok(format!("{}\tlocal\n", top.path().join(dir).display())),
            );
            rec.always(
                &format!("/sbin/zfs get -H -p -o value,source mounted {ds}"),
                Output::ok("yes\t-\n"),
            );
        }
        let w = World { top, rec };
        w.write_template();
        w
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.top.path().join(name)
    }

    fn write_template(&self) {
        std::fs::write(
            self.dir("t/g/img.json"),
            r#"{ "dataset": { "name": "img", "input_snapshot": "strap", "output_snapshot": "image" },
                 "steps": [
                   { "t": "ensure_dir", "dir": "/s0", "owner": "root", "group": "root", "mode": "755" },
                   { "t": "ensure_dir", "dir": "/s1", "owner": "root", "group": "root", "mode": "755" },
                   { "t": "ensure_dir", "dir": "/s2", "owner": "root", "group": "root", "mode": "755" } ] }"#,
        )
        .unwrap();
    }

    fn plan(&self) -> image_builder::template::Plan {
        let p = plan(
            &self.dir("t"),
            "g",
            "img",
            &Features::default(),
            &PlanOptions::default(),
        );
        assert!(p.is_valid(), "{:?}", p.problems);
        p
    }

    fn opts(&self) -> BuildOptions {
        BuildOptions {
            svccfg: PathBuf::from("/nonexistent/svccfg"),
            assume_tools: true,
            smf: SmfSeeding::AtFirstBoot,
            ..BuildOptions::new("rpool/images", self.dir("t"))
        }
    }

    /// The stage's prefix keys, as the build computes them.
    fn keys(&self) -> Vec<String> {
        build::cache::inputs(
            &self.plan(),
            &self.opts(),
            &self.dir("output"),
            Some(GUID.into()),
        )
        .unwrap()
        .prefix_keys()
    }

    fn build(
        &self,
        change: impl FnOnce(BuildOptions) -> BuildOptions,
    ) -> (Result<Outcome, BuildError>, Vec<String>) {
        let zfs = zfs::ZfsCli::new(&*self.rec, zfs::ZfsTools::in_dir("/sbin"));
        let env = Env {
            host: Host::Illumos,
            runner: &*self.rec,
            zfs: &zfs,
        };
        let mut events = Vec::new();
        let r = build::build(&self.plan(), &change(self.opts()), &env, &mut |e| {
            events.push(serde_json::to_string(e).unwrap())
        });
        (r, events)
    }

    /// The recorded commands that changed the work dataset.
    fn work_changes(&self) -> Vec<String> {
        self.rec
            .lines()
            .into_iter()
            .filter(|l| !(l.contains(" list ") || l.contains("zfs get ")))
            .filter(|l| l.contains(WORK))
            .collect()
    }

    fn made(&self, dirs: &[&str]) -> bool {
        dirs.iter().all(|d| self.dir("work").join(d).is_dir())
    }
}

fn exists(p: &Path) -> bool {
    p.exists()
}

const CLONE: &str = "rpool/images/tmp/g/img-shell";

/// A stage with a checkpoint after step 1, ready for `shell`: the clone's parent exists (a
/// build made it), and the clone, once made, is listed and not yet mounted; `chroot` exits
/// with status 3.
fn shell_world(snaps: &[&str]) -> World {
    World::with(snaps, &[], |rec, top| {
        // zfs(8) list -H -o name: the clone exists once `zfs clone` made it.
        for n in [CLONE, "rpool/images/tmp/g"] {
            rec.always(
                &format!("/sbin/zfs list -H -p -o name -t all {n}"),
                Output::ok(format!("{n}\n")),
            );
        }
        // zfs(8) get -H -p -o value,source: a clone inherits its parent's mountpoint
        // (source "inherited from ..."); `mounted` is read-only (source "-").
        rec.always(
            &format!("/sbin/zfs get -H -p -o value,source mountpoint {CLONE}"),
            Output::ok(format!(
                "{}\tinherited from rpool/images/tmp\n",
                top.join("clone").display()
            )),
        );
        rec.always(
            &format!("/sbin/zfs get -H -p -o value,source mounted {CLONE}"),
            Output::ok("no\t-\n"),
        );
        // chroot(8): exits with the status of the command it ran.
        rec.always("/usr/sbin/chroot ", Output::failed(3, ""));
    })
}

fn run_shell(w: &World, at: &build::shell::At, argv: &[&str]) -> Result<i32, BuildError> {
    let zfs = zfs::ZfsCli::new(&*w.rec, zfs::ZfsTools::in_dir("/sbin"));
    let env = Env {
        host: Host::Illumos,
        runner: &*w.rec,
        zfs: &zfs,
    };
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    build::shell::shell(&w.plan(), &w.opts(), &env, at, &argv)
}

/// The recorded commands that changed something, the top directory as `W`.
fn shell_actions(w: &World) -> Vec<String> {
    let top = w.top.path().display().to_string();
    w.rec
        .lines()
        .into_iter()
        .filter(|l| !(l.contains(" list ") || l.contains("zfs get ")))
        .map(|l| l.replace(&top, "W"))
        .collect()
}

fn journals(w: &World) -> usize {
    std::fs::read_dir(w.dir("output/.image-builder/journals"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn shell_at_a_step_runs_its_command_chrooted_in_a_clone_of_the_checkpoint_then_destroys_it() {
    let w = shell_world(&["strap", "ib:after-001", "image"]);
    let at = build::shell::At::Step(1);
    assert_eq!(run_shell(&w, &at, &["/bin/cat", "/s1/marker"]).unwrap(), 3);
    assert_eq!(
        shell_actions(&w),
        [
            // zfs(8) clone: `zfs clone snapshot filesystem`, mounted (zfs(8) mount
            // filesystem) when it is not yet.
            format!("/sbin/zfs clone {WORK}@ib:after-001 {CLONE}"),
            format!("/sbin/zfs mount {CLONE}"),
            // chroot(8): `chroot newroot [command]`.
            "/usr/sbin/chroot W/clone /bin/cat /s1/marker".to_string(),
            // zfs(8) destroy -r: the clone and anything under it.
            format!("/sbin/zfs destroy -r {CLONE}"),
        ]
    );
    assert_eq!(journals(&w), 0);
}

#[test]
fn shell_opens_the_output_snapshot_by_default_and_a_kept_failure_through_a_snapshot_of_its_own() {
    let w = shell_world(&["strap", "image"]);
    run_shell(&w, &build::shell::At::Output, &["/bin/true"]).unwrap();
    assert_eq!(
        shell_actions(&w)[0],
        format!("/sbin/zfs clone {WORK}@image {CLONE}")
    );

    let w = shell_world(&["strap", "ib:shell"]);
    run_shell(&w, &build::shell::At::Failed, &["/bin/true"]).unwrap();
    assert_eq!(
        shell_actions(&w),
        [
            // zfs(8) snapshot: the work dataset as it is now.
            format!("/sbin/zfs snapshot {WORK}@ib:shell"),
            format!("/sbin/zfs clone {WORK}@ib:shell {CLONE}"),
            format!("/sbin/zfs mount {CLONE}"),
            "/usr/sbin/chroot W/clone /bin/true".to_string(),
            // Undone newest first: the clone, then the snapshot it came from.
            format!("/sbin/zfs destroy -r {CLONE}"),
            format!("/sbin/zfs destroy -r {WORK}@ib:shell"),
        ]
    );
    assert_eq!(journals(&w), 0);
}

#[test]
fn shell_without_the_state_asked_for_names_what_there_is_and_touches_nothing() {
    let w = shell_world(&["strap", "ib:after-000", "ib:after-001"]);
    let e = run_shell(&w, &build::shell::At::Step(2), &["/bin/true"])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "there is no checkpoint after step 2 (ensure_dir, g/img.json:steps[2]): {WORK} has \
             checkpoints after step(s) 0, 1"
        )
    );
    let e = run_shell(&w, &build::shell::At::Output, &["/bin/true"])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "{WORK}@image does not exist (the stage is not complete): open a checkpoint with --at STEP"
        )),
        "{e}"
    );
    assert_eq!(shell_actions(&w), Vec::<String>::new());
}

#[test]
fn until_keeps_the_tree_after_its_step_as_a_checkpoint_and_makes_no_output_snapshot() {
    let w = World::new(&["strap"], &[]);
    let keys = w.keys();
    let (r, events) = w.build(|o| BuildOptions {
        until: Some(1),
        ..o
    });
    assert_eq!(r.unwrap(), Outcome::Built);
    // zfs(8) rollback -r to the input, then the checkpoint after step 1 with its prefix
    // key (zfs(8) snapshot -o property=value); no `@image`, so no cache key either.
    assert_eq!(
        w.work_changes(),
        [
            format!("/sbin/zfs rollback -r {WORK}@strap"),
            format!(
                "/sbin/zfs snapshot -o org.illumos.image-builder:prefix={} {WORK}@ib:after-001",
                keys[1]
            ),
        ]
    );
    assert!(w.made(&["s0", "s1"]) && !exists(&w.dir("work/s2")));
    assert!(
        events.iter().any(|e| e
            == &format!(r#"{{"event":"stopped","index":1,"checkpoint":"{WORK}@ib:after-001"}}"#)),
        "{events:?}"
    );
    let rec = std::fs::read_to_string(w.dir("output/g-img.build.json")).unwrap();
    assert!(rec.contains(r#""cache": "partial""#), "{rec}");
}

#[test]
fn until_starts_from_a_matching_checkpoint_before_its_step_never_after_it() {
    let w = World::new(&["strap"], &[]);
    let keys = w.keys();
    // Both checkpoints match; the one after step 2 holds more than --until 1 asks for.
    let w = World::new(
        &["strap", "ib:after-000", "ib:after-002"],
        &[("ib:after-000", &keys[0]), ("ib:after-002", &keys[2])],
    );
    let (r, _) = w.build(|o| BuildOptions {
        until: Some(1),
        ..o
    });
    r.unwrap();
    assert_eq!(
        w.work_changes(),
        [
            format!("/sbin/zfs rollback -r {WORK}@ib:after-000"),
            format!(
                "/sbin/zfs snapshot -o org.illumos.image-builder:prefix={} {WORK}@ib:after-001",
                keys[1]
            ),
        ]
    );
    assert!(w.made(&["s1"]) && !exists(&w.dir("work/s0")) && !exists(&w.dir("work/s2")));
}

#[test]
fn from_starts_at_the_checkpoint_of_the_steps_before_it_and_completes_the_stage() {
    let w = World::new(&["strap"], &[]);
    let keys = w.keys();
    // The newest checkpoint matches too, but --from 1 reruns step 1.
    let w = World::new(
        &["strap", "ib:after-000", "ib:after-001"],
        &[("ib:after-000", &keys[0]), ("ib:after-001", &keys[1])],
    );
    let (r, _) = w.build(|o| BuildOptions { from: Some(1), ..o });
    assert_eq!(r.unwrap(), Outcome::Built);
    let changes = w.work_changes();
    assert_eq!(
        changes[0],
        format!("/sbin/zfs rollback -r {WORK}@ib:after-000")
    );
    // A complete stage: the output snapshot with its cache key (zfs(8) snapshot -o).
    assert!(
        changes[1].starts_with("/sbin/zfs snapshot -o org.illumos.image-builder:key=")
            && changes[1].ends_with(&format!(" {WORK}@image")),
        "{changes:?}"
    );
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(w.made(&["s1", "s2"]) && !exists(&w.dir("work/s0")));
}

#[test]
fn from_is_refused_with_the_reason_when_no_checkpoint_holds_the_steps_before_it() {
    let w = World::new(&["strap"], &[]);
    let keys = w.keys();
    // Stale: step 1 changed since the checkpoint after it was taken.
    let w = World::new(&["strap", "ib:after-001"], &[("ib:after-001", "0123abcd")]);
    let (r, _) = w.build(|o| BuildOptions { from: Some(2), ..o });
    let e = r.unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "--from 2: no checkpoint of {WORK} holds steps 0-1"
        )),
        "{e}"
    );
    assert!(e.contains("build with --until 1 first"), "{e}");
    assert_eq!(w.work_changes(), Vec::<String>::new());

    // Only the checkpoint after step 0 matches: step 1 would have to run first.
    let w = World::new(&["strap", "ib:after-000"], &[("ib:after-000", &keys[0])]);
    let (r, _) = w.build(|o| BuildOptions { from: Some(2), ..o });
    let e = r.unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "--from 2: the newest matching checkpoint is {WORK}@ib:after-000 (after step 0), \
             so step(s) 1 would have to run first; use --from 1, or build with --until 1 first"
        )
    );
    assert_eq!(w.work_changes(), Vec::<String>::new());
}

#[test]
fn until_and_from_are_refused_for_an_image_target_with_the_reason() {
    let w = World::new(&["strap"], &[]);
    std::fs::write(
        w.dir("t/g/img.json"),
        r#"{ "pool": { "name": "p", "size": 64, "bename": "oi" }, "steps": [
             { "t": "ensure_dir", "dir": "/s0", "owner": "root", "group": "root", "mode": "755" } ] }"#,
    )
    .unwrap();
    let (r, _) = w.build(|o| BuildOptions {
        until: Some(0),
        ..o
    });
    let e = r.unwrap_err().to_string();
    assert!(
        e.starts_with("--until and --from: only a dataset stage keeps its tree after the build, and a pool image is built in a temporary pool"),
        "{e}"
    );
    assert_eq!(w.rec.lines(), Vec::<String>::new());
}
