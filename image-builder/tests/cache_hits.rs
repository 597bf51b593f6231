//! Cached dataset stages: the exact ZFS commands of an unchanged three-stage chain, pinned
//! with the recording runner (illumos paths, replies in the shape `zfs list -H -p` prints).
//! Each cached stage issues one listing, and a rollback only when the tree was written to
//! after its newest snapshot; a rebuild after an edit takes what it needs to resume from a
//! checkpoint from the same listing.

use std::path::{Path, PathBuf};

use image_builder::build::{self, cache, BuildOptions, Env, Event, Outcome};
use image_builder::host::Host;
use image_builder::template::{plan, Features, Plan, PlanOptions};
use runner::{Output, Recorder};

const WORK: &str = "rpool/images/work/g/w";

/// The listing a dataset stage asks for: the root with its children and the work dataset
/// with its snapshots, in creation order (zfs(8) list: `-d 1` shows a data set, its direct
/// children and its snapshots; `-s createtxg` sorts by creation).
const LISTING: &str = "/usr/sbin/zfs list -H -p \
    -o name,type,mountpoint,mounted,guid,written,org.illumos.image-builder:key,org.illumos.image-builder:prefix \
    -t filesystem,snapshot -s createtxg -d 1 rpool/images rpool/images/work/g/w";

/// GUIDs of the stage snapshots (zfs(8) list -p prints the guid property as a decimal
/// 64-bit number).
const GUIDS: [&str; 3] = [
    "8815304164313270471",
    "1204569231985093442",
    "509915711214882081",
];

struct Chain {
    top: tempfile::TempDir,
}

impl Chain {
    fn new() -> Chain {
        let top = tempfile::tempdir().unwrap();
        for d in ["t/g", "output", "work"] {
            std::fs::create_dir_all(top.path().join(d)).unwrap();
        }
        let stage = |name: &str, input: Option<&str>, output: &str, file: &str| {
            let input = input
                .map(|i| format!(r#""input_snapshot": "{i}", "#))
                .unwrap_or_default();
            std::fs::write(
                top.path().join(format!("t/g/{name}.json")),
                format!(
                    r#"{{ "dataset": {{ "name": "w", {input}"output_snapshot": "{output}" }},
                         "steps": [ {{ "t": "ensure_file", "file": "/etc/{file}", "contents": "x\n",
                                      "owner": "root", "group": "root", "mode": "644" }} ] }}"#
                ),
            )
            .unwrap();
        };
        stage("s1", None, "one", "a");
        stage("s2", Some("one"), "two", "b");
        stage("s3", Some("two"), "three", "c");
        Chain { top }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.top.path().join(name)
    }

    fn plan(&self, name: &str) -> Plan {
        let p = plan(
            &self.dir("t"),
            "g",
            name,
            &Features::default(),
            &PlanOptions::default(),
        );
        assert!(p.is_valid(), "{:?}", p.problems);
        p
    }

    fn opts(&self) -> BuildOptions {
        BuildOptions::new("rpool/images", self.dir("t"))
    }

    /// The cache key stage `name` has when its input snapshot has `input_guid`.
    fn key(&self, name: &str, input_guid: Option<&str>) -> String {
        cache::inputs(
            &self.plan(name),
            &self.opts(),
            &self.dir("output"),
            input_guid.map(str::to_string),
        )
        .unwrap()
        .key()
    }

    /// The listing's reply for a work dataset holding the three stage snapshots, each with
    /// the key its stage has now, and `written` bytes written since the newest.
    fn reply(&self, written: &str) -> Output {
        let keys = [
            self.key("s1", None),
            self.key("s2", Some(GUIDS[0])),
            self.key("s3", Some(GUIDS[1])),
        ];
        // One row per data set, one tab between fields (-H); print_dataset in zfs_main.c
        // prints "-" for an unset user property and for a property the type does not have
        // (a snapshot's mountpoint and mounted).
        let fs = |name: &str, dir: &str, guid: &str, written: &str| {
            format!(
                "{name}\tfilesystem\t{}\tyes\t{guid}\t{written}\t-\t-\n",
                self.dir(dir).display()
            )
        };
        let mut text = String::new();
        text += &fs("rpool/images", "", "3411923512874110253", "0");
        text += &fs("rpool/images/output", "output", "6716346290432154771", "0");
        text += &fs("rpool/images/work", "", "13046702530954163421", "0");
        text += &fs(WORK, "work", "2287619264393416338", written);
        for (i, snap) in ["one", "two", "three"].into_iter().enumerate() {
            text += &format!(
                "{WORK}@{snap}\tsnapshot\t-\t-\t{}\t{}\t{}\t-\n",
                GUIDS[i],
                20480 * (i + 1),
                keys[i]
            );
        }
        Output::ok(text)
    }

    /// Builds `name` against the recorder; the outcome and whether a cache hit was reported.
    fn build(&self, rec: &Recorder, name: &str) -> (Result<Outcome, String>, bool) {
        let zfs = zfs::ZfsCli::new(rec, zfs::ZfsTools::in_dir("/usr/sbin"));
        let env = Env {
            host: Host::Illumos,
            runner: rec,
            zfs: &zfs,
        };
        let mut hit = false;
        let r = build::build(&self.plan(name), &self.opts(), &env, &mut |e| {
            hit |= matches!(e, Event::CacheHit { .. })
        });
        (r.map_err(|e| e.to_string()), hit)
    }
}

fn rollback(snap: &str) -> String {
    // zfs(8) rollback: -r destroys later snapshots (there are none: it is the newest).
    format!("/usr/sbin/zfs rollback -r {WORK}@{snap}")
}

#[test]
fn an_unchanged_three_stage_chain_issues_one_listing_per_stage() {
    let c = Chain::new();
    let rec = Recorder::new();
    rec.always(LISTING, c.reply("0"));
    for s in ["s1", "s2", "s3"] {
        assert_eq!(c.build(&rec, s), (Ok(Outcome::Cached), true), "{s}");
    }
    // Nothing was written after the newest snapshot: no rollback.
    assert_eq!(rec.lines(), [LISTING, LISTING, LISTING]);
    assert!(Path::new(&c.dir("output/g-s3.build.json")).is_file());
}

#[test]
fn a_cached_newest_stage_written_to_since_is_rolled_back_in_its_second_command() {
    let c = Chain::new();
    let rec = Recorder::new();
    // zfs(8) list -p: written, in bytes, of the file system since its newest snapshot.
    rec.always(LISTING, c.reply("4096"));
    // zfs(8) rollback prints nothing when it succeeds.
    rec.on(&rollback("three"), Output::ok(""));
    for s in ["s1", "s2", "s3"] {
        assert_eq!(c.build(&rec, s), (Ok(Outcome::Cached), true), "{s}");
    }
    // Only the stage whose snapshot is the newest resets the tree to it.
    assert_eq!(rec.lines(), [LISTING, LISTING, LISTING, &rollback("three")]);
}

#[test]
fn a_listing_whose_input_snapshot_has_another_guid_is_no_cache_hit() {
    let c = Chain::new();
    // What a miss goes on to run is not this test's point (image_builds pins it): the
    // commands after the listing succeed with no output.
    let rec = Recorder::new().allow_unmatched();
    // Stage 1 was rebuilt since stage 2's snapshot: its key was made from another GUID.
    let text = c.reply("0").stdout_str().replace(GUIDS[0], "42");
    rec.always(LISTING, Output::ok(text));
    let (r, hit) = c.build(&rec, "s2");
    assert!(!hit, "{r:?}");
    assert_ne!(r, Ok(Outcome::Cached));
    assert!(rec.lines().len() > 1, "{:?}", rec.lines());
}

/// A three-step stage whose last step (`last`, a step's JSON) was edited since the build
/// that left a checkpoint after step 1 and one after step 2 (whose prefix key no longer
/// matches): the rebuild rolls back to the first and runs step 2 alone. With `scratch`,
/// that step uses the scratch dataset. Returns the commands run.
fn resume_after_edit(c: &Chain, last: &str, scratch: bool) -> Vec<String> {
    std::fs::write(
        c.dir("t/g/r.json"),
        format!(
            r#"{{ "dataset": {{ "name": "w", "output_snapshot": "done" }}, "steps": [
             {{ "t": "ensure_dir", "dir": "/etc", "owner": "root", "group": "root", "mode": "755" }},
             {{ "t": "ensure_file", "file": "/etc/a", "contents": "a\n",
               "owner": "root", "group": "root", "mode": "644" }},
             {last} ] }}"#
        ),
    )
    .unwrap();
    // Steps 0 and 1 are as they were: the checkpoint after step 1 carries their prefix
    // key; the output snapshot carries the key of the stage before the edit.
    let prefix = cache::inputs(&c.plan("r"), &c.opts(), &c.dir("output"), None)
        .unwrap()
        .prefix_keys();
    let fs = |name: &str, dir: &str| {
        format!(
            "{name}\tfilesystem\t{}\tyes\t1\t0\t-\t-\n",
            c.dir(dir).display()
        )
    };
    let mut text = fs("rpool/images", "") + &fs("rpool/images/output", "output");
    text += &fs("rpool/images/work", "");
    text += &fs(WORK, "work");
    text += &format!(
        "{WORK}@ib:after-001\tsnapshot\t-\t-\t2\t8192\t-\t{}\n",
        prefix[1]
    );
    text += &format!("{WORK}@ib:after-002\tsnapshot\t-\t-\t3\t8192\t-\tother\n");
    text += &format!("{WORK}@done\tsnapshot\t-\t-\t4\t0\tbefore-the-edit\t-\n");
    // The tree as the rollback to the checkpoint leaves it (step 0's /etc; step 1's
    // /etc/a left out, to show that step 1 does not run again).
    std::fs::create_dir_all(c.dir("work/etc")).unwrap();
    let rec = Recorder::new();
    rec.on(LISTING, Output::ok(text));
    // zfs(8) create, rollback, snapshot and destroy print nothing when they succeed.
    let back = format!("/usr/sbin/zfs rollback -r {WORK}@ib:after-001");
    rec.on(&back, Output::ok(""));
    let tmp = "rpool/images/tmp/g/r";
    let create = format!("/usr/sbin/zfs create -p -o sync=disabled {tmp}");
    let where_tmp =
        format!("/usr/sbin/zfs list -H -p -o name,mountpoint,mounted -t filesystem -d 0 {tmp}");
    let destroy = format!("/usr/sbin/zfs destroy -r {tmp}");
    if scratch {
        rec.on(&create, Output::ok(""));
        rec.on(
            &where_tmp,
            Output::ok(format!("{tmp}\t{}\tyes\n", c.dir("tmp").display())),
        );
        rec.on(&destroy, Output::ok(""));
    }
    let snap = "/usr/sbin/zfs snapshot -o org.illumos.image-builder:key=";
    rec.on(snap, Output::ok(""));

    assert_eq!(c.build(&rec, "r"), (Ok(Outcome::Built), false));
    rec.assert_all_rules_used();
    let lines = rec.lines();
    let out = lines.iter().position(|l| l.starts_with(snap)).unwrap();
    assert!(lines[out].ends_with(&format!(" {WORK}@done")), "{lines:?}");
    // Only the step after the checkpoint ran.
    assert!(c.dir("work/etc/b").is_file());
    assert!(!c.dir("work/etc/a").exists());
    let mut want = vec![LISTING.to_string(), back];
    if scratch {
        want.extend([create, where_tmp, lines[out].clone(), destroy]);
    } else {
        want.push(lines[out].clone());
    }
    assert_eq!(lines, want);
    lines
}

#[test]
fn an_edited_last_step_resumes_from_the_listed_checkpoint_in_three_commands() {
    let c = Chain::new();
    let lines = resume_after_edit(
        &c,
        r#"{ "t": "ensure_file", "file": "/etc/b", "contents": "edited\n",
             "owner": "root", "group": "root", "mode": "644" }"#,
        false,
    );
    assert_eq!(lines.len(), 3);
    assert_eq!(
        std::fs::read_to_string(c.dir("work/etc/b")).unwrap(),
        "edited\n"
    );
}

#[test]
fn a_rerun_step_that_uses_the_scratch_dataset_makes_it_and_destroys_it() {
    let c = Chain::new();
    // `tarsrc` reads the scratch tree an `unpack_tar` with `into_tmp` leaves.
    std::fs::create_dir_all(c.dir("tmp/unpack_tar")).unwrap();
    std::fs::write(c.dir("tmp/unpack_tar/b"), "from the archive\n").unwrap();
    let lines = resume_after_edit(
        &c,
        r#"{ "t": "ensure_file", "file": "/etc/b", "tarsrc": "/b",
             "owner": "root", "group": "root", "mode": "644" }"#,
        true,
    );
    assert_eq!(lines.len(), 6);
    assert_eq!(
        std::fs::read_to_string(c.dir("work/etc/b")).unwrap(),
        "from the archive\n"
    );
}

/// The rules for building stage s1 into a work dataset that is not there: made with its
/// parents (zfs(8) create -p, so nothing asks whether they exist first), listed for its
/// mountpoint, the output snapshot (its one step uses no scratch dataset). zfs(8) create
/// and snapshot print nothing when they succeed. Returns the command lines in the order
/// they run.
fn first_build(c: &Chain, rec: &Recorder) -> Vec<String> {
    std::fs::create_dir_all(c.dir("work/etc")).unwrap();
    let create = format!("/usr/sbin/zfs create -p {WORK}");
    rec.on(&create, Output::ok(""));
    let where_ = |ds: &str, dir: &str| {
        let line =
            format!("/usr/sbin/zfs list -H -p -o name,mountpoint,mounted -t filesystem -d 0 {ds}");
        rec.on(
            &line,
            Output::ok(format!("{ds}\t{}\tyes\n", c.dir(dir).display())),
        );
        line
    };
    let where_work = where_(WORK, "work");
    let snap = format!(
        "/usr/sbin/zfs snapshot -o org.illumos.image-builder:key={} {WORK}@one",
        c.key("s1", None)
    );
    rec.on(&snap, Output::ok(""));
    vec![create, where_work, snap]
}

/// The root listed alone, with its children (zfs(8) list -d 1).
const ROOT: &str =
    "/usr/sbin/zfs list -H -p -o name,mountpoint,mounted -t filesystem -d 1 rpool/images";

fn root_reply(c: &Chain) -> Output {
    Output::ok(format!(
        "rpool/images\t{}\tyes\nrpool/images/output\t{}\tyes\n",
        c.dir("").display(),
        c.dir("output").display()
    ))
}

/// A failed command's error for a data set that is not there: zfs_open (libzfs_dataset.c)
/// fails, and libzfs prints "ACTION: DESCRIPTION" (libzfs_util.c, zfs_verror), the
/// action "cannot open 'NAME'" and EZFS_NOENT's "dataset does not exist"; exit status 1.
fn missing(name: &str) -> Output {
    Output::failed(1, format!("cannot open '{name}': dataset does not exist\n"))
}

#[test]
fn a_first_build_of_a_missing_work_dataset_asks_the_listing_once_more_and_nothing_else() {
    let c = Chain::new();
    let rec = Recorder::new();
    // zfs_for_each (zfs_iter.c) opens each root and reports the one it cannot open.
    rec.on(LISTING, missing(WORK));
    rec.on(ROOT, root_reply(&c));
    let then = first_build(&c, &rec);
    assert_eq!(c.build(&rec, "s1"), (Ok(Outcome::Built), false));
    let mut want = vec![LISTING.to_string(), ROOT.to_string()];
    want.extend(then);
    assert_eq!(rec.lines(), want);
    rec.assert_all_rules_used();
    assert_eq!(std::fs::read_to_string(c.dir("work/etc/a")).unwrap(), "x\n");
}

#[test]
fn x_destroys_the_work_dataset_in_one_command_and_asks_nothing_about_it() {
    let c = Chain::new();
    // -x lists nothing of the work dataset with the root.
    let fullreset = || BuildOptions {
        fullreset: true,
        ..c.opts()
    };
    let destroy = format!("/usr/sbin/zfs destroy -r {WORK}");
    for gone in [false, true] {
        let rec = Recorder::new();
        rec.on(ROOT, root_reply(&c));
        // Not there: zfs destroy's own error says so, and it is no error for -x.
        let reply = if gone { missing(WORK) } else { Output::ok("") };
        rec.on(&destroy, reply);
        let then = first_build(&c, &rec);
        let zfs = zfs::ZfsCli::new(&rec, zfs::ZfsTools::in_dir("/usr/sbin"));
        let env = Env {
            host: Host::Illumos,
            runner: &rec,
            zfs: &zfs,
        };
        let r = build::build(&c.plan("s1"), &fullreset(), &env, &mut |_| {});
        assert_eq!(r.map_err(|e| e.to_string()), Ok(Outcome::Built), "{gone}");
        let mut want = vec![ROOT.to_string(), destroy.clone()];
        want.extend(then);
        assert_eq!(rec.lines(), want, "{gone}");
        rec.assert_all_rules_used();
    }
}
