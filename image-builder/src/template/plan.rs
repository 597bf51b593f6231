//! The plan: every step of a template in run order, expanded, with whether it runs; and
//! every problem validation found. Nothing here touches the system.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::check::{Checker, Context, Expander, Severity};
use super::features::Features;
use super::load::{self, Loaded, Target};
use super::model::{StepKind, TargetKind};
use super::problem::Problem;

/// What a plan needs besides the template.
pub struct PlanOptions<'a> {
    /// `-E` directories, in order.
    pub external: &'a [PathBuf],
    /// Files to treat as present although absent (see [`Context::assume_present`]).
    pub assume_present: &'a dyn Fn(&Path) -> bool,
}

impl Default for PlanOptions<'_> {
    fn default() -> Self {
        PlanOptions {
            external: &[],
            assume_present: &|_| false,
        }
    }
}

/// One step as it will run.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    /// Position in run order, from 0.
    pub index: usize,
    /// The file the step is written in.
    pub file: PathBuf,
    /// Its index in that file's `steps`.
    pub step_index: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub included_from: Vec<String>,
    pub t: String,
    /// Arguments with macros expanded (`null` when the step did not parse).
    pub args: Value,
    /// Why the step does not run, or `null` when it runs.
    pub skip: Option<String>,
    /// The typed, expanded step (`None` when it did not parse).
    #[serde(skip)]
    pub kind: Option<StepKind>,
}

/// The resolved template.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub group: String,
    pub name: String,
    pub file: PathBuf,
    /// The build target with macros expanded.
    pub target: Option<Target>,
    /// The features in force, as directives.
    pub features: Vec<String>,
    pub steps: Vec<PlannedStep>,
    pub problems: Vec<Problem>,
}

impl Plan {
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| !p.is_error())
    }

    pub fn is_valid(&self) -> bool {
        self.errors().next().is_none()
    }

    /// The steps that run (not skipped by a feature).
    fn running(&self) -> impl Iterator<Item = &StepKind> {
        self.steps
            .iter()
            .filter(|s| s.skip.is_none())
            .filter_map(|s| s.kind.as_ref())
    }

    /// Files of the output directory this template reads: archives it unpacks,
    /// `ensure_file` `outputsrc`, `gzip` and `digest` sources.
    pub fn reads(&self) -> Vec<String> {
        self.running()
            .filter_map(|k| match k {
                StepKind::UnpackTar(u) => Some(u.name.clone()),
                StepKind::EnsureFile(f) => f.outputsrc.clone(),
                StepKind::Gzip(g) => Some(g.src.clone()),
                StepKind::Digest(d) => Some(d.src.clone()),
                _ => None,
            })
            .collect()
    }

    /// The archives this template packs into the output directory (`pack_tar`).
    pub fn packs(&self) -> Vec<String> {
        self.running()
            .filter_map(|k| match k {
                StepKind::PackTar(p) => Some(p.name.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Loads, expands and validates `{root}/{group}/{name}.json` in one pass.
pub fn plan(root: &Path, group: &str, name: &str, features: &Features, opts: &PlanOptions) -> Plan {
    let loaded = load::load(root, group, name, features);
    let mut problems = loaded.problems.clone();
    let target = loaded
        .target
        .as_ref()
        .map(|t| expand_target(&loaded, t, features, &mut problems));
    let ctx = Context {
        root,
        group,
        external: opts.external,
        // With no parsed target, check steps as if for a pool, which allows every step.
        target: target.as_ref().map_or(TargetKind::Pool, Target::kind),
        assume_present: opts.assume_present,
    };
    let mut steps = Vec::new();
    for ls in &loaded.steps {
        let mut planned = PlannedStep {
            index: steps.len(),
            file: ls.file.to_path_buf(),
            step_index: ls.index,
            included_from: ls.included_from.to_vec(),
            t: ls.t.clone(),
            args: Value::Null,
            skip: ls.skipped_include.clone(),
            kind: None,
        };
        if let Some(step) = &ls.step {
            let skip = step.skip_reason(features);
            let mut x = Expander::new(features, skip.is_none());
            let kind = step.kind.expand(&mut x);
            let at = |field: &str| format!("steps[{}].{field}", ls.index);
            for (field, msg) in x.errors {
                problems.push(loaded.problem(
                    Severity::Error,
                    &ls.file,
                    &at(&field),
                    &ls.included_from,
                    msg,
                ));
            }
            if skip.is_none() && !matches!(kind, StepKind::Include(_)) {
                let mut c = Checker::new(&ctx);
                kind.check(&mut c);
                for (sev, field, msg) in c.problems {
                    problems.push(loaded.problem(
                        sev,
                        &ls.file,
                        &at(&field),
                        &ls.included_from,
                        msg,
                    ));
                }
            }
            planned.args = args_of(&kind);
            planned.skip = planned.skip.or(skip);
            planned.kind = Some(kind);
        }
        steps.push(planned);
    }
    Plan {
        group: group.to_string(),
        name: name.to_string(),
        file: loaded.file.clone(),
        target,
        features: features.to_directives(),
        steps,
        problems,
    }
}

/// The step's arguments as JSON, without its `t`.
fn args_of(kind: &StepKind) -> Value {
    let mut v = serde_json::to_value(kind).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.remove("t");
    }
    v
}

fn expand_target(loaded: &Loaded, t: &Target, f: &Features, problems: &mut Vec<Problem>) -> Target {
    let mut x = Expander::new(f, true);
    let key = t.kind().key();
    let out = match t {
        Target::Dataset(d) => Target::Dataset(super::model::Dataset {
            name: x.one("name", &d.name),
            input_snapshot: x.opt("input_snapshot", &d.input_snapshot),
            output_snapshot: x.opt("output_snapshot", &d.output_snapshot),
        }),
        Target::Pool(p) => Target::Pool(super::model::Pool {
            options: x.list("options", &p.options),
            fsoptions: x.list("fsoptions", &p.fsoptions),
            ..p.clone()
        }),
        Target::Iso(i) => Target::Iso(super::model::Iso {
            volume_id: x.opt("volume_id", &i.volume_id),
            ..i.clone()
        }),
        Target::Zone(z) => Target::Zone(super::model::Zone {
            name: x.one("name", &z.name),
            version: x.opt("version", &z.version),
            ..z.clone()
        }),
        other => other.clone(),
    };
    for (field, msg) in x.errors {
        problems.push(loaded.problem(
            Severity::Error,
            &loaded.file,
            &format!("{key}.{field}"),
            &[],
            msg,
        ));
    }
    for (field, msg) in check_target(&out) {
        problems.push(loaded.problem(
            Severity::Error,
            &loaded.file,
            &format!("{key}.{field}"),
            &[],
            msg,
        ));
    }
    out
}

fn check_target(t: &Target) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match t {
        Target::Dataset(d) => {
            let bad = |s: &str| s.is_empty() || s.contains(['@', ' ']) || s.starts_with('/');
            if bad(&d.name) {
                out.push(("name", format!("invalid dataset name {:?}", d.name)));
            }
            for (f, s) in [
                ("input_snapshot", &d.input_snapshot),
                ("output_snapshot", &d.output_snapshot),
            ] {
                if let Some(s) = s {
                    if s.is_empty() || s.contains(['@', '/', ' ']) {
                        out.push((f, format!("invalid snapshot name {s:?}")));
                    } else if s.starts_with("ib:") {
                        out.push((
                            f,
                            format!(
                                "snapshot name {s:?} is reserved: names starting with \"ib:\" are the build's step checkpoints"
                            ),
                        ));
                    }
                }
            }
        }
        Target::Pool(p) => {
            if p.size == 0 {
                out.push((
                    "size",
                    "the image size (MiB) must be more than 0".to_string(),
                ));
            }
            if let Some(a) = p.ashift {
                if !(9..=16).contains(&a) {
                    out.push((
                        "ashift",
                        format!("ashift {a} is out of range: expected 9 to 16"),
                    ));
                }
            }
            if p.name.is_empty()
                || !p.name.starts_with(|c: char| c.is_ascii_alphabetic())
                || p.name.contains(['/', '@', ' '])
            {
                out.push(("name", format!("invalid pool name {:?}", p.name)));
            }
            if p.uefi == Some(true) && p.size <= 256 {
                out.push((
                    "size",
                    format!(
                        "{} MiB leaves no room for the pool after the 256 MiB EFI system partition",
                        p.size
                    ),
                ));
            }
        }
        Target::Pcfs(p) => {
            if p.label.is_empty() || p.label.len() > 11 {
                out.push((
                    "label",
                    format!("FAT volume label {:?} must be 1 to 11 characters", p.label),
                ));
            }
            if p.size == 0 {
                out.push((
                    "size",
                    "the image size (MiB) must be more than 0".to_string(),
                ));
            }
        }
        Target::Ufs(u) => {
            if u.size == 0 {
                out.push((
                    "size",
                    "the image size (MiB) must be more than 0".to_string(),
                ));
            }
        }
        Target::Zone(z) => out.extend(super::zone::check(z)),
        Target::Iso(i) => {
            if i.hybrid.is_some() && i.boot_uefi.is_none() {
                out.push(("hybrid", "a hybrid ISO needs \"boot_uefi\": installboot needs the ESP partition to find the disk".to_string()));
            }
        }
    }
    out
}
