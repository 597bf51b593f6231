//! Working on one part of a dataset stage: `build --until STEP`, `build --from STEP` and
//! `shell --at STEP` name a step as `plan` prints it, and this module turns that into the
//! step's index and finds the checkpoint a partial run starts from.

use super::checkpoint;
use super::error::BuildError;
use crate::template::{Plan, PlannedStep, Target};

/// A step named on the command line that the plan does not have.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {value:?} names no step of {group}/{name}: give the index or the FILE:steps[N] place `plan` prints, one of:\n{shown}")]
pub struct UnknownStep {
    pub flag: String,
    pub value: String,
    pub group: String,
    pub name: String,
    /// The plan's steps, one a line, as `plan` prints them.
    pub shown: String,
}

/// Where `plan` says step `s` of `plan` is written: `FILE:steps[N]`, FILE relative to the
/// template directory.
pub fn place(plan: &Plan, s: &PlannedStep) -> String {
    let root = plan.file.parent().and_then(|p| p.parent());
    let file = root
        .and_then(|r| s.file.strip_prefix(r).ok())
        .unwrap_or(&s.file);
    format!("{}:steps[{}]", file.display(), s.step_index)
}

/// The index of the step `value` names for `flag`: its index in run order (`7`), or its
/// place as `plan` prints it (`g/base.json:steps[3]`, also `g/base.json:3`).
pub fn resolve(plan: &Plan, flag: &str, value: &str) -> Result<usize, UnknownStep> {
    let v = value.trim();
    let found = if let Ok(i) = v.parse::<usize>() {
        plan.steps.iter().find(|s| s.index == i)
    } else {
        plan.steps.iter().find(|s| {
            let p = place(plan, s);
            let short = p
                .strip_suffix(']')
                .and_then(|q| q.rsplit_once(":steps["))
                .map(|(f, n)| format!("{f}:{n}"));
            p == v || short.as_deref() == Some(v)
        })
    };
    found.map(|s| s.index).ok_or_else(|| UnknownStep {
        flag: flag.to_string(),
        value: value.to_string(),
        group: plan.group.clone(),
        name: plan.name.clone(),
        shown: plan
            .steps
            .iter()
            .map(|s| format!("{:>3}  {:<20} {}", s.index, s.t, place(plan, s)))
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

/// Refuses `what` (`--until`, `shell`) for a target other than a dataset stage, with the
/// reason: only a dataset stage's tree outlives its build.
pub fn dataset_only(target: Option<&Target>, what: &str) -> Result<(), BuildError> {
    let why = match target {
        Some(Target::Dataset(_)) => return Ok(()),
        Some(Target::Pool(_)) => {
            "a pool image is built in a temporary pool inside an image file that is exported \
             and detached when the build ends, so no state of it outlives the build"
        }
        Some(Target::Zone(_)) => {
            "a zone image is built in a fresh root that is packed and destroyed when the build ends"
        }
        Some(_) => {
            "a pcfs, ufs or iso image is built in a scratch file system that is destroyed when \
             the build ends"
        }
        None => "the template has no target",
    };
    Err(BuildError::DatasetOnly {
        what: what.to_string(),
        why: why.to_string(),
    })
}

/// Why a stage whose output snapshot is current runs anyway: `--until` or `--from`.
pub fn partial(opts: &super::BuildOptions) -> Option<String> {
    match (opts.from, opts.until) {
        (Some(f), Some(u)) => Some(format!("--from {f} --until {u}: steps {f}-{u} run")),
        (Some(f), None) => Some(format!("--from {f}: steps {f} and later run again")),
        (None, Some(u)) => Some(format!(
            "--until {u}: steps up to {u} run and the stage stays incomplete"
        )),
        (None, None) => None,
    }
}

/// Whether step `s` runs (it parsed and no feature skips it).
fn runs(s: &PlannedStep) -> bool {
    s.skip.is_none() && s.kind.is_some()
}

/// The last running step at or before `until`: the one a `--until` build checkpoints after.
pub fn last_running(plan: &Plan, until: usize) -> Option<usize> {
    plan.steps
        .iter()
        .filter(|s| s.index <= until && runs(s))
        .map(|s| s.index)
        .next_back()
}

/// The checkpoint a `--from STEP` build starts from: the newest of `found` whose prefix
/// key matches `keys` and that holds every running step before `from`. `None` for step 0,
/// which starts from the stage's input. Refuses, with the reason, when none does.
pub fn from_checkpoint(
    zfs: &dyn zfs::Zfs,
    plan: &Plan,
    work: &str,
    found: &[(usize, String)],
    keys: &[String],
    from: usize,
) -> Result<Option<(usize, String)>, BuildError> {
    if !plan.steps.iter().any(|s| s.index < from && runs(s)) {
        return Ok(None);
    }
    let before: Vec<(usize, String)> = found.iter().filter(|(i, _)| *i < from).cloned().collect();
    let Some((index, cp)) = checkpoint::newest_match(zfs, &before, keys)? else {
        return Err(BuildError::FromNoMatch {
            from,
            work: work.to_string(),
        });
    };
    let gap: Vec<String> = plan
        .steps
        .iter()
        .filter(|s| s.index > index && s.index < from && runs(s))
        .map(|s| s.index.to_string())
        .collect();
    if !gap.is_empty() {
        return Err(BuildError::FromGap {
            from,
            checkpoint: cp,
            index,
            gap,
        });
    }
    Ok(Some((index, cp)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{plan, Features, PlanOptions};

    fn three(t: &tempfile::TempDir) -> Plan {
        std::fs::create_dir_all(t.path().join("g/include")).unwrap();
        std::fs::write(
            t.path().join("g/include/base.json"),
            r#"{ "steps": [
                { "t": "ensure_dir", "dir": "/a", "owner": "root", "group": "root", "mode": "755" },
                { "t": "ensure_dir", "dir": "/b", "owner": "root", "group": "root", "mode": "755" } ] }"#,
        )
        .unwrap();
        std::fs::write(
            t.path().join("g/s.json"),
            r#"{ "dataset": { "name": "w" }, "steps": [
                { "t": "include", "name": "base" },
                { "t": "ensure_dir", "dir": "/c", "owner": "root", "group": "root", "mode": "755" } ] }"#,
        )
        .unwrap();
        let p = plan(
            t.path(),
            "g",
            "s",
            &Features::default(),
            &PlanOptions::default(),
        );
        assert_eq!(p.errors().count(), 0, "{:?}", p.problems);
        p
    }

    #[test]
    fn a_step_is_named_by_index_or_by_the_place_plan_prints() {
        let t = tempfile::tempdir().unwrap();
        let p = three(&t);
        assert_eq!(p.steps.len(), 3);
        assert_eq!(place(&p, &p.steps[1]), "g/include/base.json:steps[1]");
        assert_eq!(resolve(&p, "--until", "2").unwrap(), 2);
        assert_eq!(
            resolve(&p, "--until", "g/include/base.json:steps[1]").unwrap(),
            1
        );
        assert_eq!(resolve(&p, "--until", "g/include/base.json:0").unwrap(), 0);
        assert_eq!(resolve(&p, "--until", "g/s.json:steps[1]").unwrap(), 2);
    }

    #[test]
    fn an_unknown_step_is_named_with_every_step_plan_shows() {
        let t = tempfile::tempdir().unwrap();
        let p = three(&t);
        for bad in ["3", "g/include/base.json:steps[2]", "base.json:1", "first"] {
            let e = resolve(&p, "--from", bad).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("--from {bad:?} names no step of g/s:")),
                "{e}"
            );
            assert!(e.contains("\n  0  ensure_dir           g/include/base.json:steps[0]"));
            assert!(e.contains("\n  2  ensure_dir           g/s.json:steps[1]"));
        }
    }

    #[test]
    fn the_last_running_step_before_until_skips_steps_a_feature_leaves_out() {
        let t = tempfile::tempdir().unwrap();
        let mut p = three(&t);
        assert_eq!(last_running(&p, 1), Some(1));
        p.steps[1].skip = Some("without x".into());
        assert_eq!(last_running(&p, 1), Some(0));
        assert_eq!(last_running(&p, 2), Some(2));
    }
}
