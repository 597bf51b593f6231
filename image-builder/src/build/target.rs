//! The one skeleton every build target runs in: check, open the session (lock, the root's
//! listing, an earlier crashed build's journal undone), take a cache hit or do the work,
//! then finish (checksums, record) or abort (this build's journal unwound, or what the
//! target keeps after a failure left in it). The dataset, zone and image-file targets say
//! only what differs.

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::error::BuildError;
use super::journal::{Journal, Undo};
use super::layout::{self, Layout};
use super::record::Record;
use super::session::Session;
use super::{BuildOptions, Env, Event, Outcome};
use crate::template::Plan;

/// What a target's work gets: the build, where it happens, its journal, its events, and
/// the record it fills in.
pub(crate) struct TargetCx<'a> {
    pub plan: &'a Plan,
    pub opts: &'a BuildOptions,
    pub env: &'a Env<'a>,
    pub layout: &'a Layout,
    /// The work dataset (`DATASET/work/GROUP/NAME`).
    pub work: &'a str,
    /// `-N`, or the template's name.
    pub output_name: &'a str,
    /// Where the output dataset is mounted.
    pub output_dir: &'a Path,
    /// The work dataset and its snapshots as that listing saw them, with mountpoint,
    /// mounted and the target's [`Target::listing`] properties (`None`: not listed).
    pub work_rows: Option<&'a [zfs::Listed]>,
    pub journal: &'a mut Journal,
    pub events: &'a mut dyn FnMut(&Event),
    /// The build record: group, names, host and start filled in; the target adds the
    /// rest (cache, key, steps, outputs).
    pub rec: Record,
}

/// Which of the journal's undos a failed build leaves in place.
pub(crate) type Keep<'a> = Box<dyn Fn(&Undo) -> bool + 'a>;

/// A build target: what it does inside [`drive`].
pub(crate) trait Target {
    /// Its name in events: `dataset`, `zone`, `pool` ...
    fn key(&self) -> &'static str;

    /// The name of its work area under `DATASET/work/GROUP`, which names its lock and
    /// journal: the work dataset of dataset and zone targets.
    fn work_name<'a>(&'a self, output_name: &'a str) -> &'a str;

    /// Refuses what this host cannot build, before anything is touched or reported.
    fn check(&mut self, _env: &Env, _opts: &BuildOptions) -> Result<(), BuildError> {
        Ok(())
    }

    /// Properties of the work dataset and its snapshots to list with the root when the
    /// session opens, for [`Target::cached`] (none: no cache check).
    fn listing(&self, _opts: &BuildOptions) -> &'static [&'static str] {
        &[]
    }

    /// Decides from that listing (`rows`) whether the build is a cache hit; on a hit it
    /// fills in the record and nothing runs.
    fn cached(&mut self, _cx: &mut TargetCx, _rows: &[zfs::Listed]) -> Result<bool, BuildError> {
        Ok(false)
    }

    /// The work: steps and outputs. Every temporary thing goes in the journal first.
    fn run(&mut self, cx: &mut TargetCx) -> Result<Outcome, BuildError>;

    /// What a failed build leaves in the journal instead of undoing (`--keep-failed`);
    /// None: everything is undone.
    fn kept_on_failure<'a>(&'a self, _opts: &'a BuildOptions, _work: &'a str) -> Option<Keep<'a>> {
        None
    }
}

/// Builds `plan` as `target`.
pub(crate) fn drive(
    target: &mut dyn Target,
    plan: &Plan,
    opts: &BuildOptions,
    env: &Env,
    events: &mut dyn FnMut(&Event),
) -> Result<Outcome, BuildError> {
    let started = Instant::now();
    target.check(env, opts)?;
    let output_name = opts
        .output_name
        .clone()
        .unwrap_or_else(|| plan.name.clone());
    let layout = Layout::new(
        &opts.dataset,
        &plan.group,
        &output_name,
        Some(target.work_name(&output_name)),
    );
    let work = layout.work.clone().unwrap_or_default();
    events(&Event::Start {
        group: plan.group.clone(),
        name: plan.name.clone(),
        target: target.key().into(),
        work: Some(work.clone()),
    });
    let mut session = Session::open(env, &layout, &work, target.listing(opts), events)?;
    let output_dir = session.output_dir.clone();
    let rows = session.work_rows.take();
    let result = {
        let mut cx = TargetCx {
            plan,
            opts,
            env,
            layout: &layout,
            work: &work,
            output_name: &output_name,
            output_dir: &output_dir,
            work_rows: rows.as_deref(),
            journal: &mut session.journal,
            events: &mut *events,
            rec: new_record(plan, &output_name, env),
        };
        let hit = match rows.as_deref() {
            Some(rows) => target.cached(&mut cx, rows),
            None => Ok(false),
        };
        let outcome = match hit {
            Ok(true) => Ok(Outcome::Cached),
            Ok(false) => target.run(&mut cx),
            Err(e) => Err(e),
        };
        outcome.map(|o| (o, cx.rec))
    };
    match result {
        Ok((outcome, mut rec)) => {
            session.finish(&mut rec, started, events)?;
            Ok(outcome)
        }
        Err(e) => {
            // Whatever failed after a SIGINT/SIGTERM failed because of it.
            let e = if runner::interrupt::requested() {
                BuildError::Interrupted
            } else {
                e
            };
            match target.kept_on_failure(opts, &work) {
                Some(keep) => {
                    let kept = session.journal.pending().iter().any(&keep);
                    session.abort_except(env, events, &*keep);
                    if kept {
                        let dir = layout::mountpoint(env.zfs, &work)
                            .map(|d| d.display().to_string())
                            .unwrap_or_default();
                        events(&Event::KeptFailed {
                            work: work.clone(),
                            dir,
                            dataset: opts.dataset.clone(),
                        });
                    }
                }
                None => session.abort(env, events),
            }
            Err(e)
        }
    }
}

/// The record before the target's work: who, what, where, when.
fn new_record(plan: &Plan, output_name: &str, env: &Env) -> Record {
    Record {
        group: plan.group.clone(),
        name: plan.name.clone(),
        output_name: output_name.to_string(),
        host: env.host.name().to_string(),
        started: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        seconds: 0.0,
        cache: String::new(),
        key: None,
        inputs: None,
        steps: Vec::new(),
        outputs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runner::{Output, Recorder};

    /// A target whose work writes its scratch and work datasets in the journal and fails.
    struct Failing {
        refuse: bool,
        keep: bool,
    }

    impl Target for Failing {
        fn key(&self) -> &'static str {
            "failing"
        }

        fn work_name<'a>(&'a self, output_name: &'a str) -> &'a str {
            output_name
        }

        fn check(&mut self, _env: &Env, _opts: &BuildOptions) -> Result<(), BuildError> {
            match self.refuse {
                true => Err(BuildError::Preflight("this host cannot".into())),
                false => Ok(()),
            }
        }

        fn run(&mut self, cx: &mut TargetCx) -> Result<Outcome, BuildError> {
            cx.journal.push(Undo::DestroyDataset {
                name: cx.layout.tmp.clone(),
            })?;
            cx.journal.push(Undo::DestroyDataset {
                name: cx.work.to_string(),
            })?;
            Err(BuildError::NoPartition {
                device: "p3".into(),
            })
        }

        fn kept_on_failure<'a>(
            &'a self,
            _opts: &'a BuildOptions,
            work: &'a str,
        ) -> Option<Keep<'a>> {
            let keep: Keep<'a> =
                Box::new(move |u| matches!(u, Undo::DestroyDataset { name } if name == work));
            self.keep.then_some(keep)
        }
    }

    const WORK: &str = "rpool/ib/work/g/n";
    const TMP: &str = "rpool/ib/tmp/g/n";

    /// Answers the session's listing: the root, and its output dataset mounted at `out`
    /// (zfs(8) list -H -p -o name,mountpoint,mounted: tab-separated, no header).
    fn listing(rec: &Recorder, out: &Path) {
        rec.on(
            "/sbin/zfs list -H -p -o name,mountpoint,mounted -t filesystem -d 1 rpool/ib",
            Output::ok(format!(
                "rpool/ib\t/rpool/ib\tyes\nrpool/ib/output\t{}\tyes\n",
                out.display()
            )),
        );
    }

    /// Answers the undo of `DestroyDataset { name }`: `name` exists, and zfs(8) destroy
    /// prints nothing without -v or -n (illumos-gate zfs_main.c, zfs_do_destroy).
    fn destroyable(rec: &Recorder, name: &str) {
        rec.on(
            &format!("/sbin/zfs list -H -p -o name -t all {name}"),
            Output::ok(format!("{name}\n")),
        );
        rec.on(&format!("/sbin/zfs destroy -r {name}"), Output::ok(""));
    }

    /// Drives `t` on `rec`; returns the event names and the error.
    fn drive_on(t: &mut Failing, rec: &Recorder, out: &Path) -> (Vec<String>, String) {
        let zfs = zfs::ZfsCli::new(rec, zfs::ZfsTools::new("/sbin/zfs", "/sbin/zpool"));
        let env = Env {
            host: crate::host::Host::Illumos,
            runner: rec,
            zfs: &zfs,
        };
        let plan = Plan {
            group: "g".into(),
            name: "n".into(),
            file: out.join("g/n.json"),
            target: None,
            features: Vec::new(),
            steps: Vec::new(),
            problems: Vec::new(),
        };
        let opts = BuildOptions::new("rpool/ib", out);
        let mut events = Vec::new();
        let err = drive(t, &plan, &opts, &env, &mut |e: &Event| {
            let v = serde_json::to_value(e).unwrap();
            events.push(v["event"].as_str().unwrap_or_default().to_string());
        })
        .unwrap_err();
        (events, err.to_string())
    }

    fn journal_files(out: &Path) -> Vec<String> {
        std::fs::read_dir(out.join(".image-builder/journals"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect()
    }

    #[test]
    fn a_refused_target_touches_nothing() {
        let out = tempfile::tempdir().unwrap();
        let rec = Recorder::new();
        let mut t = Failing {
            refuse: true,
            keep: false,
        };
        let (events, err) = drive_on(&mut t, &rec, out.path());
        assert_eq!(err, "this host cannot");
        assert!(events.is_empty(), "{events:?}");
        assert!(rec.lines().is_empty(), "{:?}", rec.lines());
    }

    #[test]
    fn a_failed_run_unwinds_its_journal_newest_first() {
        let out = tempfile::tempdir().unwrap();
        let rec = Recorder::new();
        listing(&rec, out.path());
        destroyable(&rec, WORK);
        destroyable(&rec, TMP);
        let mut t = Failing {
            refuse: false,
            keep: false,
        };
        let (events, err) = drive_on(&mut t, &rec, out.path());
        assert!(err.contains("partition device p3"), "{err}");
        assert_eq!(events, ["start", "cleanup", "cleanup"]);
        let destroys: Vec<String> = rec
            .lines()
            .into_iter()
            .filter(|l| l.contains(" destroy "))
            .collect();
        assert_eq!(
            destroys,
            [
                format!("/sbin/zfs destroy -r {WORK}"),
                format!("/sbin/zfs destroy -r {TMP}")
            ]
        );
        rec.assert_all_rules_used();
        assert!(journal_files(out.path()).is_empty());
    }

    #[test]
    fn what_the_target_keeps_after_a_failure_stays_in_the_journal() {
        let out = tempfile::tempdir().unwrap();
        let rec = Recorder::new();
        listing(&rec, out.path());
        destroyable(&rec, TMP);
        // Where the kept dataset is: zfs(8) list -H -p -o name,mountpoint,mounted, one
        // tab-separated row (illumos-gate zfs_main.c, print_dataset).
        rec.on(
            &format!("/sbin/zfs list -H -p -o name,mountpoint,mounted -t filesystem -d 0 {WORK}"),
            Output::ok(format!("{WORK}\t/rpool/ib/work/g/n\tyes\n")),
        );
        let mut t = Failing {
            refuse: false,
            keep: true,
        };
        let (events, err) = drive_on(&mut t, &rec, out.path());
        assert!(err.contains("partition device p3"), "{err}");
        assert_eq!(events, ["start", "cleanup", "kept_failed"]);
        rec.assert_all_rules_used();
        let left = journal_files(out.path());
        assert_eq!(left.len(), 1);
        assert!(left[0].contains(WORK), "{}", left[0]);
        assert!(!left[0].contains(TMP), "{}", left[0]);
    }
}
