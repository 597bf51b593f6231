//! Step checkpoints inside a dataset stage: snapshots of the work dataset taken between
//! steps, each carrying the prefix key of the steps it holds (see
//! [`super::cache::KeyInputs::prefix_keys`]). A rebuild rolls back to the newest checkpoint
//! whose key still matches and runs only the steps after it.
//!
//! A checkpoint after step `N` is `WORK@ib:after-NNN` (`N` zero-padded to three digits).
//! Template snapshot names (`input_snapshot`, `output_snapshot`) cannot contain `:`
//! (they are checked as names without it), and the reference tool names its snapshots
//! only after those, so the names never collide.

use super::cache;
use super::error::BuildError;
use super::layout;
use super::BuildOptions;
use crate::template::model::Dataset;
use crate::template::{Plan, PlannedStep, StepKind};

/// The ZFS user property holding a checkpoint's prefix key.
pub const PREFIX_PROPERTY: &str = "org.illumos.image-builder:prefix";

/// What every checkpoint's snapshot name starts with (after `@`).
pub const NAME_PREFIX: &str = "ib:after-";

/// When checkpoints are taken and how many a finished stage keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Take a checkpoint once the steps since the last one took this many seconds.
    pub after_seconds: f64,
    /// Checkpoints a finished stage keeps (the newest ones).
    pub keep: usize,
    /// The share of the steps' time checkpoints may cost (0.03: 3 %), `None` for no limit:
    /// the steps between two checkpoints take at least the mean time of this build's
    /// checkpoints divided by it, whatever `after_seconds` and the next step say.
    pub budget: Option<f64>,
    /// No checkpoints at all (`--no-checkpoints`), but the one `--until` keeps.
    pub never: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            after_seconds: 60.0,
            keep: 2,
            budget: Some(0.03),
            never: false,
        }
    }
}

/// What the checkpoints this build took cost, for [`Policy::budget`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Costs {
    seconds: f64,
    count: u32,
}

impl Costs {
    /// One more checkpoint, which took `seconds`.
    pub fn add(&mut self, seconds: f64) {
        self.seconds += seconds;
        self.count += 1;
    }

    /// The least time the steps since the last checkpoint must take before the next one:
    /// the checkpoints' mean time divided by the budget; zero before the first checkpoint
    /// (nothing is known of their cost yet) and without a budget.
    pub fn spacing(&self, policy: &Policy) -> f64 {
        match policy.budget {
            Some(b) if self.count > 0 && b > 0.0 => self.seconds / f64::from(self.count) / b,
            _ => 0.0,
        }
    }
}

/// The checkpoint snapshot holding the tree after step `index`.
pub fn name(work: &str, index: usize) -> String {
    format!("{work}@{NAME_PREFIX}{index:03}")
}

/// The step index of a checkpoint snapshot of `work`, `None` for any other snapshot.
pub fn index_of(work: &str, snapshot: &str) -> Option<usize> {
    let rest = snapshot.strip_prefix(work)?.strip_prefix('@')?;
    let digits = rest.strip_prefix(NAME_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Steps worth a checkpoint just before them, whatever `after_seconds` says (the budget
/// still applies).
pub fn is_expensive(kind: Option<&StepKind>) -> bool {
    matches!(
        kind,
        Some(StepKind::PkgInstall(_) | StepKind::UnpackTar(_) | StepKind::Onu(_))
    )
}

/// Steps that write into the output directory, or into the scratch tree a later
/// `ensure_file` with `tarsrc` reads (`unpack_tar` with `into_tmp`): the tree after them
/// does not hold all their effects, so no checkpoint is taken after one (a resume would
/// skip it, and the scratch dataset is made afresh for every build).
pub fn writes_outputs(kind: Option<&StepKind>) -> bool {
    match kind {
        Some(StepKind::PackTar(_) | StepKind::Gzip(_) | StepKind::Digest(_)) => true,
        Some(StepKind::UnpackTar(u)) => u.into_tmp == Some(true),
        _ => false,
    }
}

/// Whether to take a checkpoint after a step, given the seconds the steps since the last
/// checkpoint took (that one included), what this build's checkpoints cost so far and the
/// steps after it. Before an expensive step the time threshold does not count, the budget
/// does: rerunning steps that took less than the checkpoint would cost less than taking it.
pub fn wanted(policy: &Policy, since: f64, costs: &Costs, rest: &[PlannedStep]) -> bool {
    if policy.never {
        return false;
    }
    let Some(next) = rest.iter().find(|s| s.skip.is_none() && s.kind.is_some()) else {
        // The stage's output snapshot follows.
        return false;
    };
    since >= costs.spacing(policy)
        && (since >= policy.after_seconds || is_expensive(next.kind.as_ref()))
}

/// The checkpoints of `work` made after its snapshot `after` (all of them when `None`),
/// oldest first, with their step indices.
pub fn list(
    zfs: &dyn zfs::Zfs,
    work: &str,
    after: Option<&str>,
) -> Result<Vec<(usize, String)>, BuildError> {
    Ok(list_in(&zfs.snapshots(work)?, work, after))
}

/// [`list`] among `snaps`, the work dataset's snapshots oldest first.
pub fn list_in(snaps: &[String], work: &str, after: Option<&str>) -> Vec<(usize, String)> {
    let start = match after {
        Some(a) => snaps.iter().position(|s| s == a).map_or(0, |p| p + 1),
        None => 0,
    };
    snaps[start..]
        .iter()
        .filter_map(|s| index_of(work, s).map(|i| (i, s.clone())))
        .collect()
}

/// The newest checkpoint among `checkpoints` whose prefix key matches `keys` (indexed by
/// step), as (step index, snapshot).
pub fn newest_match(
    zfs: &dyn zfs::Zfs,
    checkpoints: &[(usize, String)],
    keys: &[String],
) -> Result<Option<(usize, String)>, BuildError> {
    newest_match_by(checkpoints, keys, &|snap| {
        Ok(zfs.get(snap, PREFIX_PROPERTY)?)
    })
}

/// [`newest_match`], with each checkpoint's prefix key from `prefix_of`.
pub fn newest_match_by(
    checkpoints: &[(usize, String)],
    keys: &[String],
    prefix_of: &dyn Fn(&str) -> Result<Option<String>, BuildError>,
) -> Result<Option<(usize, String)>, BuildError> {
    for (i, snap) in checkpoints.iter().rev() {
        let Some(want) = keys.get(*i) else { continue };
        if prefix_of(snap)?.as_deref() == Some(want.as_str()) {
            return Ok(Some((*i, snap.clone())));
        }
    }
    Ok(None)
}

/// Destroys all but the newest `keep` of `checkpoints`; returns the destroyed ones.
pub fn prune(
    zfs: &dyn zfs::Zfs,
    checkpoints: &[(usize, String)],
    keep: usize,
) -> Result<Vec<String>, BuildError> {
    let n = checkpoints.len().saturating_sub(keep);
    let gone: Vec<String> = checkpoints[..n].iter().map(|(_, s)| s.clone()).collect();
    // All of one work dataset, in one command.
    let mut by_dataset: Vec<(&str, Vec<&str>)> = Vec::new();
    for snap in &gone {
        let Some((dataset, name)) = snap.split_once('@') else {
            continue;
        };
        match by_dataset.iter_mut().find(|(d, _)| *d == dataset) {
            Some((_, names)) => names.push(name),
            None => by_dataset.push((dataset, vec![name])),
        }
    }
    for (dataset, names) in by_dataset {
        zfs.destroy_snapshots(dataset, &names)?;
    }
    Ok(gone)
}

/// Which checkpoint a build of `target` would resume from, and the first step whose
/// prefix key differs from the last recorded build's, with why. Reads ZFS and the build
/// record only.
pub(super) fn step_status(
    plan: &Plan,
    target: &Dataset,
    opts: &BuildOptions,
    zfs: &dyn zfs::Zfs,
) -> Result<super::StepStatus, BuildError> {
    let stage = layout::Stage::new(plan, target, opts);
    let (work, output_name) = (&stage.work, &stage.output_name);
    let snap = |s: &str| stage.snap(s);
    let mut status = super::StepStatus {
        resume_from: None,
        first_change: None,
    };
    if !zfs.exists(&stage.layout.root)? || !zfs.exists(work)? {
        return Ok(status);
    }
    let output_dir = stage.output_dir(zfs)?;
    let input_guid = match &target.input_snapshot {
        Some(s) if zfs.exists(&snap(s))? => zfs.get(&snap(s), "guid")?,
        _ => None,
    };
    let inputs = cache::inputs(plan, opts, &output_dir, input_guid).map_err(BuildError::Sources)?;
    let after = target.input_snapshot.as_deref().map(snap);
    let found = list(zfs, work, after.as_deref())?;
    status.resume_from = newest_match(zfs, &found, &inputs.prefix_keys())?;
    // The last build's inputs, from its record.
    let record = output_dir.join(format!("{}-{output_name}.build.json", plan.group));
    let old = std::fs::read(&record)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| serde_json::from_value::<cache::KeyInputs>(v["inputs"].clone()).ok());
    if let Some(old) = old {
        status.first_change = cache::first_change(&old, &inputs);
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_destroys_the_older_checkpoints_in_one_command() {
        // zfs destroy prints nothing on success (zfs_main.c's zfs_do_destroy, without -v).
        let rec = runner::Recorder::new().allow_unmatched();
        let zfs = zfs::ZfsCli::new(&rec, zfs::ZfsTools::new("/sbin/zfs", "/sbin/zpool"));
        let made: Vec<(usize, String)> = [1, 4, 9, 12]
            .into_iter()
            .map(|i| (i, name("p/work/g/w", i)))
            .collect();
        let gone = prune(&zfs, &made, 1).unwrap();
        assert_eq!(gone.len(), 3);
        assert_eq!(
            rec.lines(),
            ["/sbin/zfs destroy p/work/g/w@ib:after-001,ib:after-004,ib:after-009"]
        );
        // Nothing to prune: no command.
        prune(&zfs, &made[..1], 2).unwrap();
        assert_eq!(rec.lines().len(), 1);
    }

    #[test]
    fn checkpoint_names_round_trip_and_other_snapshots_are_not_checkpoints() {
        assert_eq!(name("p/work/g/w", 7), "p/work/g/w@ib:after-007");
        assert_eq!(index_of("p/work/g/w", "p/work/g/w@ib:after-007"), Some(7));
        assert_eq!(
            index_of("p/work/g/w", "p/work/g/w@ib:after-1234"),
            Some(1234)
        );
        for other in [
            "p/work/g/w@final",
            "p/work/g/w@ib:after-",
            "p/work/g/w@ib:after-7x",
            "p/work/g/wx@ib:after-007",
            "p/work/g/w/child@ib:after-007",
        ] {
            assert_eq!(index_of("p/work/g/w", other), None, "{other}");
        }
    }

    /// The plan of template `g/s.json` holding `json`.
    fn plan_of(json: &str) -> Plan {
        use crate::template::{plan, Features, PlanOptions};
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("g")).unwrap();
        std::fs::write(t.path().join("g/s.json"), json).unwrap();
        plan(
            t.path(),
            "g",
            "s",
            &Features::default(),
            &PlanOptions::default(),
        )
    }

    #[test]
    fn no_checkpoint_follows_a_step_whose_effects_are_outside_the_tree() {
        let p = plan_of(
            r#"{ "dataset": { "name": "w", "output_snapshot": "out" }, "steps": [
                 { "t": "unpack_tar", "name": "a.tar" },
                 { "t": "unpack_tar", "name": "a.tar", "into_tmp": true },
                 { "t": "pack_tar", "name": "b.tar" } ] }"#,
        );
        assert!(p.is_valid(), "{:?}", p.problems);
        let outside: Vec<bool> = p
            .steps
            .iter()
            .map(|s| writes_outputs(s.kind.as_ref()))
            .collect();
        // The scratch tree of `into_tmp` is made afresh each build; an archive is an output.
        assert_eq!(outside, [false, true, true]);
    }

    #[test]
    fn the_budget_spaces_checkpoints_by_what_they_cost() {
        let p = plan_of(
            r#"{ "dataset": { "name": "w", "output_snapshot": "out" }, "steps": [
                 { "t": "ensure_dir", "dir": "/a", "owner": "root", "group": "root", "mode": "755" },
                 { "t": "ensure_dir", "dir": "/b", "owner": "root", "group": "root", "mode": "755" },
                 { "t": "unpack_tar", "name": "a.tar" } ] }"#,
        );
        assert!(p.is_valid(), "{:?}", p.problems);
        let (before_dir, before_tar) = (&p.steps[1..], &p.steps[2..]);
        let policy = Policy {
            after_seconds: 0.5,
            ..Policy::default()
        };
        let mut costs = Costs::default();
        // Nothing known of the cost before the first checkpoint: the time threshold alone.
        assert!(!wanted(&policy, 0.4, &costs, before_dir));
        assert!(wanted(&policy, 0.5, &costs, before_dir));
        // Checkpoints of 0.2 s and 0.4 s: at 3 %, 10 s of steps between two.
        costs.add(0.2);
        costs.add(0.4);
        assert!((costs.spacing(&policy) - 10.0).abs() < 1e-9);
        assert!(!wanted(&policy, 9.9, &costs, before_dir));
        assert!(wanted(&policy, 10.001, &costs, before_dir));
        // Before an expensive step the threshold does not count, the budget does.
        assert!(!wanted(&policy, 0.1, &costs, before_tar));
        assert!(wanted(&policy, 10.001, &costs, before_tar));
        let long = Policy {
            after_seconds: 60.0,
            ..policy
        };
        assert!(wanted(&long, 10.001, &costs, before_tar));
        assert!(!wanted(&long, 10.0, &costs, before_dir));
        // Without a budget, the threshold and the step type alone, as the policy says.
        let free = Policy {
            budget: None,
            ..policy
        };
        assert_eq!(costs.spacing(&free), 0.0);
        assert!(wanted(&free, 0.0, &costs, before_tar));
        assert!(wanted(&free, 0.5, &costs, before_dir));
        // No checkpoint before the output snapshot.
        assert!(!wanted(&free, 100.0, &costs, &[]));
        // --no-checkpoints: none at all.
        let never = Policy {
            never: true,
            ..free
        };
        assert!(!wanted(&never, 100.0, &costs, before_tar));
    }

    #[test]
    fn a_template_snapshot_name_in_the_checkpoint_namespace_is_refused() {
        let p = plan_of(
            r#"{ "dataset": { "name": "w", "output_snapshot": "ib:after-003" }, "steps": [] }"#,
        );
        let errors: Vec<String> = p.errors().map(|e| e.to_string()).collect();
        assert!(
            errors.iter().any(|e| e.contains(
                "snapshot name \"ib:after-003\" is reserved: names starting with \"ib:\" are the build's step checkpoints"
            )),
            "{errors:?}"
        );
    }
}
