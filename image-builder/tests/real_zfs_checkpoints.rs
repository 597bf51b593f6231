//! ZFS tier: step checkpoints against a real OpenZFS, on the world of `real_zfs_build`
//! (run by `scripts/zfs-tier` inside the zfs-vm guest): a 12-step stage rerun from the
//! checkpoint before an edit, resumed after a failure, a failed tree kept until `clean`
//! discards it, and builds interrupted while a checkpoint is taken.
//!
//! Each test is `#[ignore]`d because it needs `/dev/zfs`, which a development host has
//! not: a plain `cargo test` then reports it as ignored instead of passing it untried.
//! `scripts/zfs-tier` (the ZFS tier of `.ci/run`) runs the ignored tests in the guest on
//! real OpenZFS.

use crate::real_zfs_build::World;
use crate::tier;

use image_builder::build::{self, BuildOptions, Outcome};
use tier::tier;
use zfs::Zfs;

/// A 12-step first stage: step `i` writes the marker `/m/i`; step 2 installs the template
/// file `three`; `fail_at` replaces that step by one that fails; step 11 packs the tree.
fn twelve_steps(edit: &str, fail_at: Option<usize>) -> String {
    let mut steps = vec![
        r#"{ "t": "ensure_dir", "dir": "/m", "owner": "root", "group": "root", "mode": "755" }"#
            .to_string(),
    ];
    for i in 1..11 {
        let step = if Some(i) == fail_at {
            r#"{ "t": "ensure_perms", "path": "/does/not/exist", "owner": "root", "group": "root", "mode": "644" }"#.to_string()
        } else if i == 2 {
            r#"{ "t": "ensure_file", "file": "/m/2", "src": "three", "owner": "root", "group": "root", "mode": "644" }"#.to_string()
        } else {
            let text = if i == 8 { edit } else { "marker" };
            format!(
                r#"{{ "t": "ensure_file", "file": "/m/{i}", "contents": "{text} {i}\n", "owner": "root", "group": "root", "mode": "644" }}"#
            )
        };
        steps.push(step);
    }
    steps.push(r#"{ "t": "pack_tar", "name": "twelve.tar.gz" }"#.to_string());
    format!(
        r#"{{ "dataset": {{ "name": "w", "output_snapshot": "done" }}, "steps": [ {} ] }}"#,
        steps.join(",\n")
    )
}

/// The step indices the last build of `g/twelve` ran, from its build record.
fn ran(w: &World) -> Vec<u64> {
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.output_dir().join("g-twelve.build.json")).unwrap())
            .unwrap();
    rec["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["index"].as_u64().unwrap())
        .collect()
}

/// Each marker's modification time: a step that ran again rewrote its marker, one that
/// came from a checkpoint did not.
fn marker_times(w: &World) -> Vec<std::time::SystemTime> {
    (1..11)
        .map(|i| {
            std::fs::metadata(w.work_dir().join(format!("m/{i}")))
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH)
        })
        .collect()
}

fn rerun_from(before: &[std::time::SystemTime], after: &[std::time::SystemTime]) -> Vec<usize> {
    (1..11).filter(|i| before[i - 1] != after[i - 1]).collect()
}

#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn step_checkpoints_rerun_only_the_steps_after_an_edit_and_resume_after_a_failure() {
    let Some(zfs) = tier() else { return };
    let w = World::new(&zfs);
    w.write("files/three", "three\n");
    w.write("g/twelve.json", &twelve_steps("marker", None));
    let every = BuildOptions {
        checkpoints: build::checkpoint::Policy {
            after_seconds: 0.0,
            budget: None,
            never: false,
            keep: 20,
        },
        ..w.opts()
    };
    let tar = || std::fs::read(w.output_dir().join("twelve.tar.gz")).unwrap();
    assert_eq!(
        w.build_with("twelve", every.clone()).unwrap(),
        Outcome::Built
    );
    assert_eq!(ran(&w), (0..12).collect::<Vec<u64>>());
    // A checkpoint after every step but the last (the output snapshot follows it), each
    // with its prefix key.
    let cps: Vec<String> = (0..11)
        .map(|i| format!("{}@ib:after-{i:03}", w.work()))
        .collect();
    let mut want = cps.clone();
    want.push(format!("{}@done", w.work()));
    assert_eq!(w.snapshots(), want);
    for c in &cps {
        let k = zfs.get(c, "org.illumos.image-builder:prefix").unwrap();
        assert_eq!(k.map(|k| k.len()), Some(64), "{c}");
    }

    // Edit step 8: steps 8-11 run again.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let t0 = marker_times(&w);
    w.write("g/twelve.json", &twelve_steps("edited", None));
    w.build_with("twelve", every.clone()).unwrap();
    assert_eq!(ran(&w), [8, 9, 10, 11]);
    assert_eq!(rerun_from(&t0, &marker_times(&w)), [8, 9, 10]);
    assert_eq!(
        std::fs::read_to_string(w.work_dir().join("m/8")).unwrap(),
        "edited 8\n"
    );
    let incremental = tar();

    // Edit the file step 2 reads: steps 2-11 run again.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let t0 = marker_times(&w);
    w.write("files/three", "three, edited\n");
    w.build_with("twelve", every.clone()).unwrap();
    assert_eq!(ran(&w), (2..12).collect::<Vec<u64>>());
    assert_eq!(
        rerun_from(&t0, &marker_times(&w)),
        (2..11).collect::<Vec<_>>()
    );
    w.write("files/three", "three\n");
    w.build_with("twelve", every.clone()).unwrap();
    assert_eq!(ran(&w), (2..12).collect::<Vec<u64>>());

    // Step 6 fails: the work dataset goes back to the checkpoint after step 5.
    w.write("g/twelve.json", &twelve_steps("edited", Some(6)));
    let e = w
        .build_with("twelve", every.clone())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("step 6 (ensure_perms, "), "{e}");
    assert_eq!(w.snapshots().last(), Some(&cps[5]));
    assert!(!w.work_dir().join("m/6").exists());
    // Fixed, --resume runs steps 6-11 only.
    w.write("g/twelve.json", &twelve_steps("edited", None));
    w.build_with(
        "twelve",
        BuildOptions {
            resume: true,
            ..every.clone()
        },
    )
    .unwrap();
    assert_eq!(ran(&w), (6..12).collect::<Vec<u64>>());
    // Every partial path made what a clean full build makes, byte for byte.
    assert_eq!(tar(), incremental);
    w.build_with(
        "twelve",
        BuildOptions {
            fullreset: true,
            ..every.clone()
        },
    )
    .unwrap();
    assert_eq!(ran(&w), (0..12).collect::<Vec<u64>>());
    assert_eq!(
        tar(),
        incremental,
        "a clean build differs from the incremental ones"
    );

    // A finished stage keeps only the configured number of checkpoints, the newest.
    w.write("g/twelve.json", &twelve_steps("again", None));
    w.build_with(
        "twelve",
        BuildOptions {
            checkpoints: build::checkpoint::Policy {
                after_seconds: 0.0,
                budget: None,
                never: false,
                keep: 3,
            },
            ..w.opts()
        },
    )
    .unwrap();
    assert_eq!(ran(&w), [8, 9, 10, 11]);
    assert_eq!(
        w.snapshots(),
        [
            cps[8].clone(),
            cps[9].clone(),
            cps[10].clone(),
            format!("{}@done", w.work())
        ]
    );
}

#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn keep_failed_leaves_the_failed_tree_until_clean_discards_it() {
    let Some(zfs) = tier() else { return };
    let w = World::new(&zfs);
    w.write("files/three", "three\n");
    w.write("g/twelve.json", &twelve_steps("marker", Some(6)));
    let e = w
        .build_with(
            "twelve",
            BuildOptions {
                keep_failed: true,
                ..w.opts()
            },
        )
        .unwrap_err();
    assert!(e.to_string().starts_with("step 6 (ensure_perms, "), "{e}");
    // The tree as the failure left it: steps 0-5 ran, nothing rolled back.
    assert_eq!(
        std::fs::read_to_string(w.work_dir().join("m/5")).unwrap(),
        "marker 5\n"
    );
    assert!(
        !zfs.exists(&format!("{}/tmp/g/twelve", w.dataset()))
            .unwrap(),
        "scratch dataset left behind"
    );
    let journals = w.output_dir().join(".image-builder/journals");
    assert_eq!(std::fs::read_dir(&journals).unwrap().count(), 1);

    let runner = runner::SystemRunner::new();
    let sys = build::device::System {
        host: image_builder::host::Host::Linux,
        runner: &runner,
        zfs: &zfs,
    };
    let done = build::clean(&w.dataset(), &sys).unwrap();
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(
        !zfs.exists(&w.work()).unwrap(),
        "the kept work dataset is still there"
    );
    assert_eq!(std::fs::read_dir(&journals).unwrap().count(), 0);
    assert_eq!(
        build::clean(&w.dataset(), &sys).unwrap(),
        Vec::<String>::new()
    );
}

/// Ctrl-C while a checkpoint is being taken (the build's SIGINT sent as soon as its log says
/// it runs the `zfs snapshot` of that checkpoint): the build exits 130 and leaves the cache
/// consistent. Every snapshot left is a whole checkpoint with its prefix key, the tree is
/// the newest one's (the checkpoint being taken either never came to be or was rolled back
/// to), no journal is pending, and the next build resumes from the newest checkpoint and
/// makes what a clean build makes, byte for byte. Interrupted twice: in a first build and in
/// the rebuild that resumes from what the first left. Ignored in a plain `cargo test`, as
/// the module's other tests: it needs `/dev/zfs` and real OpenZFS, which `scripts/zfs-tier`
/// gives it in the zfs-vm guest.
#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn an_interrupt_while_a_checkpoint_is_taken_leaves_the_cache_consistent() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let Some(zfs) = tier() else { return };
    let w = World::new(&zfs);
    w.write("files/three", "three\n");
    w.write("g/twelve.json", &twelve_steps("marker", None));
    let dataset = w.dataset();
    let ib = |extra: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_image-builder"));
        c.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args([
                "build",
                "-v",
                "--checkpoint-after",
                "0",
                "--checkpoint-budget",
                "0",
            ])
            .args([
                "--keep-checkpoints",
                "20",
                "-d",
                &dataset,
                "-g",
                "g",
                "-n",
                "twelve",
            ])
            .args(extra)
            .arg("-T")
            .arg(w.templates());
        c
    };
    let cp = |i: usize| format!("{}@ib:after-{i:03}", w.work());
    let mut newest = None;
    for at in [4usize, 7] {
        let mut child = ib(&[])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = BufReader::new(child.stderr.take().unwrap());
        let (mut sent, mut log) = (false, String::new());
        let taking = cp(at);
        for line in err.lines() {
            let line = line.unwrap();
            // runner::system logs each command as it starts it ("run: LINE").
            if !sent && line.contains("run: /usr/sbin/zfs snapshot") && line.contains(&taking) {
                rustix::process::kill_process(
                    rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
                    rustix::process::Signal::INT,
                )
                .unwrap();
                sent = true;
            }
            log.push_str(&line);
            log.push('\n');
        }
        let status = child.wait().unwrap();
        assert!(sent, "no snapshot of {} in the log:\n{log}", cp(at));
        assert_eq!(status.code(), Some(130), "{log}");

        // Whole checkpoints only, each with its key: those before `at`, and `at` itself
        // when the snapshot was done before the interrupt was seen.
        let snaps = w.snapshots();
        let n = snaps.len();
        eprintln!("interrupted taking {}: {n} checkpoints left", cp(at));
        assert!(n == at || n == at + 1, "{snaps:?}\n{log}");
        assert_eq!(snaps, (0..n).map(cp).collect::<Vec<_>>(), "{log}");
        for c in &snaps {
            let k = zfs.get(c, "org.illumos.image-builder:prefix").unwrap();
            assert_eq!(k.map(|k| k.len()), Some(64), "{c}");
        }
        // The tree is the newest checkpoint's: the marker of the step after it is not there.
        assert!(w.work_dir().join(format!("m/{}", n - 1)).exists());
        assert!(!w.work_dir().join(format!("m/{n}")).exists(), "{log}");
        let journals = w.output_dir().join(".image-builder/journals");
        assert_eq!(std::fs::read_dir(&journals).unwrap().count(), 0, "{log}");
        assert!(!zfs
            .exists(&format!("{}/tmp/g/twelve", w.dataset()))
            .unwrap());
        newest = Some(n - 1);
    }

    // The next build resumes from the newest checkpoint left.
    let o = ib(&[]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let newest = newest.unwrap() as u64;
    assert_eq!(ran(&w), (newest + 1..12).collect::<Vec<u64>>());
    let resumed = std::fs::read(w.output_dir().join("twelve.tar.gz")).unwrap();
    let o = ib(&["-x"]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(ran(&w), (0..12).collect::<Vec<u64>>());
    assert_eq!(
        std::fs::read(w.output_dir().join("twelve.tar.gz")).unwrap(),
        resumed,
        "the build resumed after the interrupts differs from a clean build"
    );
}
