//! A pool that turns SUSPENDED while a step runs ends the build with an error naming the
//! state, instead of hanging; cleanup still runs. (Own test binary: the interrupt it
//! triggers is process-wide.)

use std::path::PathBuf;
use std::time::{Duration, Instant};

use image_builder::build::{self, BuildOptions, Env};
use image_builder::host::Host;
use image_builder::steps::SmfSeeding;
use image_builder::template::{plan, Features, PlanOptions};
use runner::{Cmd, Output, Recorder, RunError, Runner};

/// The recorder, except that `beadm` hangs like a command stuck on a dead pool, until the
/// build interrupts it.
struct Hanging(Recorder);

impl Runner for Hanging {
    fn output(&self, cmd: &Cmd) -> Result<Output, RunError> {
        let out = self.0.output(cmd);
        if cmd.program().ends_with("beadm") {
            let start = Instant::now();
            while !runner::interrupt::requested() {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "never interrupted"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            return Err(RunError::Interrupted { cmd: cmd.display() });
        }
        out
    }
}

#[test]
fn a_suspended_pool_stops_the_build_with_its_state() {
    let top = tempfile::tempdir().unwrap();
    let d = |n: &str| top.path().join(n);
    for n in ["t/g", "output", "tmp", "work"] {
        std::fs::create_dir_all(d(n)).unwrap();
    }
    std::fs::write(
        d("t/g/img.json"),
        r#"{ "pool": { "name": "rpool", "size": 64, "bename": "oi" },
             "steps": [ { "t": "create_be" }, { "t": "make_bootable" } ] }"#,
    )
    .unwrap();
    // Commands without a rule succeed with no output, like the zfs(8), zpool(8) and
    // lofiadm(8) commands that change something; the queries get rules.
    let rec = Recorder::new().allow_unmatched();
    // What illumos lofiadm prints for a labelled device: its block node with p0
    // (usr/src/cmd/lofiadm/main.c, add_mapping() printing make_blkdevname()).
    rec.on("/usr/sbin/lofiadm -l -a", Output::ok("/dev/dsk/c9t1d0p0\n"));
    rec.always(
        "/sbin/zpool list -H -o health TEMPORARY-g-img",
        Output::ok("SUSPENDED\n"),
    );
    rec.on("/sbin/zpool list -H -o name", Output::ok(""));
    rec.always(
        "/sbin/zpool list -H -o name",
        Output::ok("TEMPORARY-g-img\n"),
    );
    for ds in ["rpool/images/output", "rpool/images"] {
        rec.always(
            &format!("/sbin/zfs list -H -p -o name -t all {ds}"),
            Output::ok(format!("{ds}\n")),
        );
    }
    for (ds, dir) in [
        ("rpool/images/output", "output"),
        ("rpool/images/work/g/img", "work"),
    ] {
        rec.always(
            &format!("/sbin/zfs get -H -p -o value,source mountpoint {ds}"),
            Output::ok(format!("{}\tlocal\n", d(dir).display())),
        );
        rec.always(
            &format!("/sbin/zfs get -H -p -o value,source mounted {ds}"),
            Output::ok("yes\t-\n"),
        );
    }
    rec.always(
        "/sbin/zfs get -H -p -o value,source org.opensolaris.libbe:uuid",
        Output::ok("-\t-\n"),
    );
    let runner = Hanging(rec);
    let zfs = zfs::ZfsCli::new(&runner, zfs::ZfsTools::in_dir("/sbin"));
    let p = plan(
        &d("t"),
        "g",
        "img",
        &Features::default(),
        &PlanOptions::default(),
    );
    assert!(p.is_valid(), "{:?}", p.problems);
    let opts = BuildOptions {
        svccfg: PathBuf::from("/nonexistent"),
        assume_tools: true,
        smf: SmfSeeding::AtFirstBoot,
        ..BuildOptions::new("rpool/images", d("t"))
    };
    let env = Env {
        host: Host::Illumos,
        runner: &runner,
        zfs: &zfs,
    };
    let started = Instant::now();
    let err = build::build(&p, &opts, &env, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("TEMPORARY-g-img became SUSPENDED"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        !runner::interrupt::requested(),
        "the interrupt was cleared for cleanup"
    );
    let lines = runner.0.lines();
    let beadm = lines.iter().position(|l| l.contains("beadm")).unwrap();
    assert!(
        lines[beadm..]
            .iter()
            .any(|l| l == "/sbin/zpool export -f TEMPORARY-g-img"),
        "{lines:#?}"
    );
    assert!(lines[beadm..]
        .iter()
        .any(|l| l.starts_with("/usr/sbin/lofiadm -d")));
}
