//! Dataset stages through the same world: a work dataset holding snapshots this tool did
//! not make, and step checkpoints (taken, matched, resumed from, kept after a failure).

use super::*;

/// A work dataset `rpool/images/work/g/img` holding `snaps`, each without this tool's cache
/// key, as the reference image-builder (or a plain `zfs snapshot`) leaves them.
fn world_with_keyless(snaps: &[&str]) -> World {
    let work = "rpool/images/work/g/img";
    // Before the defaults: rules match by prefix, and `... rpool/images` is one.
    World::with(Host::Illumos, |rec, _| {
        let mut names: Vec<String> = snaps.iter().map(|s| format!("{work}@{s}")).collect();
        names.push(work.to_string());
        for n in &names {
            rec.always(
                &format!("/sbin/zfs list -H -p -o name -t all {n}"),
                Output::ok(format!("{n}\n")),
            );
        }
        for s in snaps {
            rec.always(
                &format!("/sbin/zfs get -H -p -o value,source guid {work}@{s}"),
                Output::ok("8815304164313270471\t-\n"),
            );
            // zfs(8) get: an unset user property shows value "-" with source "-".
            rec.always(
                &format!(
                    "/sbin/zfs get -H -p -o value,source org.illumos.image-builder:key {work}@{s}"
                ),
                Output::ok("-\t-\n"),
            );
        }
    })
}

/// What touched the work dataset: destroyed, rolled back, re-created or snapshotted.
fn work_changes(w: &World) -> Vec<String> {
    w.actions()
        .into_iter()
        .filter(|l| l.contains("rpool/images/work/g/img"))
        .collect()
}

#[test]
fn a_first_stage_built_elsewhere_is_neither_reused_nor_destroyed_without_x() {
    let w = world_with_keyless(&["strap"]);
    w.template(r#"{ "dataset": { "name": "img", "output_snapshot": "strap" }, "steps": [] }"#);
    for reset in [false, true] {
        let e = w
            .build_with(Host::Illumos, &*w.rec, vec![], |o| BuildOptions {
                reset,
                ..o
            })
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "rpool/images/work/g/img@strap was built elsewhere (it has no \
             org.illumos.image-builder:key cache key): pass -x to rebuild \
             rpool/images/work/g/img from scratch (-r cannot: the stage has no input snapshot)",
            "-r {reset}"
        );
    }
    assert_eq!(work_changes(&w), Vec::<String>::new());

    // -x: the user asked for it. (zfs destroy, unscripted, succeeds: the work dataset was
    // there; nothing asks about it before or after.)
    let w = World::with(Host::Illumos, |_, _| {});
    w.template(r#"{ "dataset": { "name": "img", "output_snapshot": "strap" }, "steps": [] }"#);
    w.build_with(Host::Illumos, &*w.rec, vec![], |o| BuildOptions {
        fullreset: true,
        ..o
    })
    .unwrap();
    let changes = work_changes(&w);
    assert_eq!(changes[0], "/sbin/zfs destroy -r rpool/images/work/g/img");
    assert!(
        !w.rec
            .lines()
            .iter()
            .any(|l| l.starts_with("/sbin/zfs list -H -p -o name -t all rpool/images/work")),
        "{:?}",
        w.rec.lines()
    );
    assert!(
        changes[2].starts_with("/sbin/zfs snapshot -o org.illumos.image-builder:key=")
            && changes[2].ends_with(" rpool/images/work/g/img@strap"),
        "{changes:?}"
    );
}

#[test]
fn a_later_stage_over_a_snapshot_built_elsewhere_needs_r_or_x() {
    let w = world_with_keyless(&["strap", "image"]);
    w.template(
        r#"{ "dataset": { "name": "img", "input_snapshot": "strap", "output_snapshot": "image" },
             "steps": [] }"#,
    );
    let e = w
        .build(Host::Illumos, &*w.rec, vec![])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("rpool/images/work/g/img@image was built elsewhere")
            && e.ends_with(
                ": pass -x to rebuild rpool/images/work/g/img from scratch, or -r to rebuild \
                 this stage from rpool/images/work/g/img@strap"
            ),
        "{e}"
    );
    assert_eq!(work_changes(&w), Vec::<String>::new());
    // -r, as in the reference: back to the input snapshot, the stage runs again.
    w.build_with(Host::Illumos, &*w.rec, vec![], |o| BuildOptions {
        reset: true,
        ..o
    })
    .unwrap();
    let changes = work_changes(&w);
    assert_eq!(
        changes[0],
        "/sbin/zfs rollback -r rpool/images/work/g/img@strap"
    );
    assert!(
        !changes.iter().any(|l| l.contains(" destroy ")),
        "{changes:?}"
    );
}

const CKPT_WORK: &str = "rpool/images/work/g/img";

/// A later stage over `@strap` with three steps, whose output snapshot `@image` does not
/// exist yet; `snaps` lists the work dataset's snapshots (oldest first) as the stage
/// starts, `props` the prefix key each checkpoint among them carries.
fn checkpoint_world(snaps: &[&str], props: &[(&str, &str)]) -> World {
    checkpoint_world_then(snaps, props, |_| {})
}

/// [`checkpoint_world`] whose recorder answers `first`'s rules before the others.
fn checkpoint_world_then(
    snaps: &[&str],
    props: &[(&str, &str)],
    first: impl FnOnce(&Recorder),
) -> World {
    let w = World::with(Host::Illumos, |rec, _| {
        first(rec);
        // zfs(8) list -H: one tab-separated line per dataset, here one column, name; an
        // absent snapshot: `zfs list` fails, and the parent's listing does not name it.
        rec.always(
            &format!("/sbin/zfs list -H -p -o name -t all {CKPT_WORK}@image"),
            Output::failed(
                1,
                "cannot open 'rpool/images/work/g/img@image': dataset does not exist\n",
            ),
        );
        // Rules match by prefix, first added first: the snapshots before the dataset.
        for n in [format!("{CKPT_WORK}@strap"), CKPT_WORK.to_string()] {
            rec.always(
                &format!("/sbin/zfs list -H -p -o name -t all {n}"),
                Output::ok(format!("{n}\n")),
            );
        }
        rec.always(
            &format!("/sbin/zfs list -H -p -o name -t all -d 1 {CKPT_WORK}"),
            Output::ok(format!("{CKPT_WORK}\n")),
        );
        // zfs(8) get -H -p -o value,source: guid is a read-only native property (source "-").
        rec.always(
            &format!("/sbin/zfs get -H -p -o value,source guid {CKPT_WORK}@strap"),
            Output::ok("8815304164313270471\t-\n"),
        );
        // zfs(8) list -t snapshot -d 1 -s createtxg: the dataset's own snapshots, oldest first.
        let listing: String = snaps.iter().map(|s| format!("{CKPT_WORK}@{s}\n")).collect();
        rec.on(
            &format!("/sbin/zfs list -H -p -o name -t snapshot -d 1 -s createtxg {CKPT_WORK}"),
            Output::ok(listing),
        );
        for (s, key) in props {
            // A user property set with `zfs snapshot -o` has source "local" (zfs(8) get).
            rec.always(
                &format!(
                    "/sbin/zfs get -H -p -o value,source org.illumos.image-builder:prefix {CKPT_WORK}@{s}"
                ),
                Output::ok(format!("{key}\tlocal\n")),
            );
        }
    });
    w.template(
        r#"{ "dataset": { "name": "img", "input_snapshot": "strap", "output_snapshot": "image" },
             "steps": [
               { "t": "ensure_dir", "dir": "/s0", "owner": "root", "group": "root", "mode": "755" },
               { "t": "ensure_dir", "dir": "/s1", "owner": "root", "group": "root", "mode": "755" },
               { "t": "ensure_dir", "dir": "/s2", "owner": "root", "group": "root", "mode": "755" } ] }"#,
    );
    w
}

/// The prefix keys of `checkpoint_world`'s stage, as the build computes them.
fn checkpoint_keys(w: &World) -> Vec<String> {
    let p = w.plan();
    let opts = BuildOptions {
        smf: SmfSeeding::AtFirstBoot,
        ..BuildOptions::new("rpool/images", w.dir("t"))
    };
    image_builder::build::cache::inputs(
        &p,
        &opts,
        &w.dir("output"),
        Some("8815304164313270471".into()),
    )
    .unwrap()
    .prefix_keys()
}

fn every_step_checkpoints(keep: usize) -> impl FnOnce(BuildOptions) -> BuildOptions {
    move |o| BuildOptions {
        checkpoints: image_builder::build::checkpoint::Policy {
            after_seconds: 0.0,
            budget: None,
            never: false,
            keep,
        },
        ..o
    }
}

#[test]
fn checkpoints_are_snapshots_with_their_prefix_key_and_a_finished_stage_prunes_them() {
    let w = checkpoint_world(&["strap"], &[]);
    // After the steps, the listing the pruning reads.
    w.rec.on(
        &format!("/sbin/zfs list -H -p -o name -t snapshot -d 1 -s createtxg {CKPT_WORK}"),
        Output::ok(format!(
            "{CKPT_WORK}@strap\n{CKPT_WORK}@ib:after-000\n{CKPT_WORK}@ib:after-001\n{CKPT_WORK}@image\n"
        )),
    );
    let keys = checkpoint_keys(&w);
    assert_eq!(
        w.build_with(Host::Illumos, &*w.rec, vec![], every_step_checkpoints(1))
            .unwrap(),
        Outcome::Built
    );
    let changes = work_changes(&w);
    assert_eq!(changes.len(), 5, "{changes:?}");
    assert_eq!(
        changes[0],
        format!("/sbin/zfs rollback -r {CKPT_WORK}@strap")
    );
    assert_eq!(
        changes[1],
        format!(
            "/sbin/zfs snapshot -o org.illumos.image-builder:prefix={} {CKPT_WORK}@ib:after-000",
            keys[0]
        )
    );
    assert_eq!(
        changes[2],
        format!(
            "/sbin/zfs snapshot -o org.illumos.image-builder:prefix={} {CKPT_WORK}@ib:after-001",
            keys[1]
        )
    );
    // None after the last step: the output snapshot follows.
    assert!(
        changes[3].starts_with("/sbin/zfs snapshot -o org.illumos.image-builder:key=")
            && changes[3].ends_with(&format!(" {CKPT_WORK}@image")),
        "{changes:?}"
    );
    assert_eq!(
        changes[4],
        format!("/sbin/zfs destroy {CKPT_WORK}@ib:after-000")
    );
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k.len() == 64));
}

/// The work dataset's checkpoint snapshots the build took, in order.
fn checkpoints_taken(w: &World) -> Vec<String> {
    work_changes(w)
        .into_iter()
        .filter(|c| c.starts_with("/sbin/zfs snapshot ") && c.contains("@ib:after-"))
        .filter_map(|c| c.rsplit_once('@').map(|(_, s)| s.to_string()))
        .collect()
}

#[test]
fn the_budget_spaces_checkpoints_by_what_they_cost_and_no_checkpoints_takes_none() {
    // Each checkpoint takes 0.3 s: at 3 %, the steps between two must take 10 s; these
    // three take milliseconds, so after the first (taken before its cost is known) no
    // other follows, where without a budget one follows every step but the last.
    // zfs(8) snapshot prints nothing on success (illumos-gate usr/src/cmd/zfs/zfs_main.c,
    // zfs_do_snapshot: only usage errors go to stderr).
    let slow = |rec: &Recorder| {
        rec.always(
            "/sbin/zfs snapshot -o org.illumos.image-builder:prefix=",
            runner::Reply::After(std::time::Duration::from_millis(300), Output::ok("")),
        );
    };
    let policy = |budget, never| {
        move |o| BuildOptions {
            checkpoints: image_builder::build::checkpoint::Policy {
                after_seconds: 0.0,
                budget,
                never,
                keep: 5,
            },
            ..o
        }
    };
    let cases = [
        (Some(0.03), false, vec!["ib:after-000"]),
        (None, false, vec!["ib:after-000", "ib:after-001"]),
        (Some(0.03), true, vec![]),
    ];
    for (budget, never, want) in cases {
        let w = checkpoint_world_then(&["strap"], &[], slow);
        assert_eq!(
            w.build_with(Host::Illumos, &*w.rec, vec![], policy(budget, never))
                .unwrap(),
            Outcome::Built
        );
        assert_eq!(
            checkpoints_taken(&w),
            want,
            "budget {budget:?}, never {never}"
        );
        // The steps ran and the stage is complete either way.
        assert!(w.dir("work/s0").is_dir() && w.dir("work/s2").is_dir());
        assert!(work_changes(&w)
            .iter()
            .any(|c| c.contains("org.illumos.image-builder:key=") && c.ends_with("@image")));
    }
}

#[test]
fn a_rebuild_rolls_back_to_the_newest_matching_checkpoint_and_runs_only_later_steps() {
    let w = checkpoint_world(&["strap", "ib:after-000", "ib:after-001"], &[]);
    let keys = checkpoint_keys(&w);
    // The newer checkpoint's key is stale (step 1 was edited since); the older matches.
    let w = checkpoint_world(
        &["strap", "ib:after-000", "ib:after-001"],
        &[("ib:after-001", "0123abcd"), ("ib:after-000", &keys[0])],
    );
    w.build(Host::Illumos, &*w.rec, vec![]).unwrap();
    let changes = work_changes(&w);
    assert_eq!(
        changes[0],
        format!("/sbin/zfs rollback -r {CKPT_WORK}@ib:after-000"),
        "{changes:?}"
    );
    assert!(
        !changes
            .iter()
            .any(|c| c.contains("rollback -r rpool/images/work/g/img@strap")),
        "{changes:?}"
    );
    // Step 0 came from the checkpoint; steps 1 and 2 ran.
    assert!(!w.dir("work/s0").exists());
    assert!(w.dir("work/s1").is_dir() && w.dir("work/s2").is_dir());
}

#[test]
fn resume_refuses_when_no_checkpoint_matches_and_a_plain_build_starts_over() {
    let snaps = ["strap", "ib:after-001"];
    let w = checkpoint_world(&snaps, &[("ib:after-001", "0123abcd")]);
    let e = w
        .build_with(Host::Illumos, &*w.rec, vec![], |o| BuildOptions {
            resume: true,
            ..o
        })
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "--resume: no checkpoint of {CKPT_WORK} matches this build"
        )),
        "{e}"
    );
    assert_eq!(work_changes(&w), Vec::<String>::new());
    let w = checkpoint_world(&snaps, &[("ib:after-001", "0123abcd")]);
    w.build(Host::Illumos, &*w.rec, vec![]).unwrap();
    assert_eq!(
        work_changes(&w)[0],
        format!("/sbin/zfs rollback -r {CKPT_WORK}@strap")
    );
    assert!(w.dir("work/s0").is_dir());
}

#[test]
fn plan_d_names_the_checkpoint_a_build_would_resume_from() {
    let w = checkpoint_world(&["strap"], &[]);
    let keys = checkpoint_keys(&w);
    let w = checkpoint_world(
        &["strap", "ib:after-000", "ib:after-001"],
        &[("ib:after-001", &keys[1]), ("ib:after-000", &keys[0])],
    );
    let p = w.plan();
    let zfs = zfs::ZfsCli::new(&*w.rec, zfs::ZfsTools::in_dir("/sbin"));
    let opts = BuildOptions {
        smf: SmfSeeding::AtFirstBoot,
        ..BuildOptions::new("rpool/images", w.dir("t"))
    };
    let st = build::step_status(&p, &opts, &zfs).unwrap().unwrap();
    assert_eq!(
        st.resume_from,
        Some((1, format!("{CKPT_WORK}@ib:after-001")))
    );
    // No build record yet: nothing to compare with.
    assert_eq!(st.first_change, None);
    assert_eq!(
        w.actions(),
        Vec::<String>::new(),
        "plan -d changed something"
    );
}

#[test]
fn keep_failed_leaves_the_work_dataset_and_its_undo_in_the_journal() {
    let failing = r#"{ "dataset": { "name": "img", "input_snapshot": "strap", "output_snapshot": "image" },
         "steps": [
           { "t": "ensure_dir", "dir": "/s0", "owner": "root", "group": "root", "mode": "755" },
           { "t": "ensure_perms", "path": "/does/not/exist", "owner": "root", "group": "root", "mode": "644" } ] }"#;
    let rollback = format!("/sbin/zfs rollback -r {CKPT_WORK}@strap");
    let journals = |w: &World| {
        std::fs::read_dir(w.dir("output/.image-builder/journals"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    // Without the flag: rolled back at once, nothing left in the journal.
    let w = checkpoint_world(&["strap"], &[]);
    w.template(failing);
    w.build(Host::Illumos, &*w.rec, vec![]).unwrap_err();
    assert_eq!(work_changes(&w), [rollback.clone(), rollback.clone()]);
    assert_eq!(journals(&w), 0);
    // With it: the failed tree stays, and so does its undo, for `image-builder clean`.
    let w = checkpoint_world(&["strap"], &[]);
    w.template(failing);
    w.build_with(Host::Illumos, &*w.rec, vec![], |o| BuildOptions {
        keep_failed: true,
        ..o
    })
    .unwrap_err();
    assert_eq!(work_changes(&w), [rollback]);
    assert!(w.dir("work/s0").is_dir());
    assert_eq!(journals(&w), 1);
    let text = std::fs::read_to_string(
        std::fs::read_dir(w.dir("output/.image-builder/journals"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap();
    assert!(text.contains(&format!("{CKPT_WORK}@strap")), "{text}");
    assert!(!text.contains("rpool/images/tmp/g/img"), "{text}");
}
