//! Reading template files: JSON, the typed target and steps, and includes spliced in.
//!
//! Loading never stops at the first problem: a step that does not parse is recorded and
//! loading goes on, so `validate` can report everything at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::check::{did_you_mean, Severity};
use super::expand::Expansion;
use super::features::Features;
use super::model::{
    Dataset, Include, Iso, Pcfs, Pool, Step, StepKind, TargetKind, Ufs, STEP_ALIASES,
};
use super::position::Positions;
use super::problem::Problem;

/// Includes nest at most this deep; deeper is almost certainly a mistake.
const MAX_INCLUDE_DEPTH: usize = 32;

/// The build target of a main template.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    Dataset(Dataset),
    Pool(Pool),
    Ufs(Ufs),
    Pcfs(Pcfs),
    Iso(Iso),
}

impl Target {
    pub fn kind(&self) -> TargetKind {
        match self {
            Target::Dataset(_) => TargetKind::Dataset,
            Target::Pool(_) => TargetKind::Pool,
            Target::Ufs(_) => TargetKind::Ufs,
            Target::Pcfs(_) => TargetKind::Pcfs,
            Target::Iso(_) => TargetKind::Iso,
        }
    }
}

/// A step as loaded: where it came from and, when it parsed, what it is.
#[derive(Debug, Clone)]
pub struct LoadedStep {
    pub file: Arc<PathBuf>,
    /// Index in its file's `steps` array.
    pub index: usize,
    /// Include sites that led here, outermost first, as `file steps[N]`.
    pub included_from: Arc<Vec<String>>,
    /// The `t` text as written (even when the step did not parse).
    pub t: String,
    /// `None` when the step did not parse (a problem says why).
    pub step: Option<Step>,
    /// Set on include steps that were skipped by `with`/`without` (their file is not read).
    pub skipped_include: Option<String>,
}

/// A main template with its includes resolved.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub file: PathBuf,
    pub target: Option<Target>,
    pub steps: Vec<LoadedStep>,
    pub problems: Vec<Problem>,
    positions: HashMap<PathBuf, Positions>,
}

impl Loaded {
    /// A problem at `path` in `file`, with its line and column when known.
    pub fn problem(
        &self,
        severity: Severity,
        file: &Path,
        path: &str,
        included_from: &[String],
        message: impl Into<String>,
    ) -> Problem {
        make_problem(
            &self.positions,
            severity,
            file,
            path,
            included_from,
            message.into(),
        )
    }
}

fn make_problem(
    positions: &HashMap<PathBuf, Positions>,
    severity: Severity,
    file: &Path,
    path: &str,
    included_from: &[String],
    message: String,
) -> Problem {
    let pos = positions.get(file).and_then(|p| p.find(path));
    Problem {
        severity,
        file: file.to_path_buf(),
        path: path.to_string(),
        line: pos.map(|p| p.0),
        column: pos.map(|p| p.1),
        message,
        included_from: included_from.to_vec(),
    }
}

/// Every main template under `root` as (group, name): `GROUP/NAME.json`, skipping the
/// `include` and `files` trees, sorted.
pub fn main_templates(root: &Path) -> std::io::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for g in std::fs::read_dir(root)? {
        let g = g?;
        let group = g.file_name().to_string_lossy().into_owned();
        if !g.file_type()?.is_dir() || group == "include" || group == "files" {
            continue;
        }
        for t in std::fs::read_dir(g.path())? {
            let t = t?;
            let file = t.file_name().to_string_lossy().into_owned();
            if let Some(name) = file.strip_suffix(".json") {
                if t.file_type()?.is_file() {
                    out.push((group.clone(), name.to_string()));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Where templates live: `{root}/{group}/{name}.json`.
pub fn template_path(root: &Path, group: &str, name: &str) -> PathBuf {
    root.join(group).join(format!("{name}.json"))
}

/// Loads `{root}/{group}/{name}.json` and everything it includes.
pub fn load(root: &Path, group: &str, name: &str, features: &Features) -> Loaded {
    let file = template_path(root, group, name);
    let mut l = Loader {
        root,
        group,
        features,
        out: Loaded {
            file: file.clone(),
            target: None,
            steps: Vec::new(),
            problems: Vec::new(),
            positions: HashMap::new(),
        },
        stack: Vec::new(),
    };
    for (label, value) in [("group", group), ("name", name)] {
        if value.is_empty() || value.contains('/') || value == ".." || value == "." {
            l.out.problems.push(make_problem(
                &l.out.positions,
                Severity::Error,
                &file,
                "",
                &[],
                format!("invalid template {label} {value:?}: expected a plain name"),
            ));
            return l.out;
        }
    }
    l.file(&file, true, Arc::new(Vec::new()));
    l.out
}

struct Loader<'a> {
    root: &'a Path,
    group: &'a str,
    features: &'a Features,
    out: Loaded,
    /// Files being loaded, outermost first, to detect include cycles.
    stack: Vec<PathBuf>,
}

impl Loader<'_> {
    fn problem(&mut self, file: &Path, path: &str, from: &[String], msg: impl Into<String>) {
        let p = make_problem(
            &self.out.positions,
            Severity::Error,
            file,
            path,
            from,
            msg.into(),
        );
        self.out.problems.push(p);
    }

    fn file(&mut self, file: &Path, main: bool, from: Arc<Vec<String>>) {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                let what = if main { "template" } else { "include" };
                self.problem(file, "", &from, format!("cannot read {what}: {e}"));
                return;
            }
        };
        let doc: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                self.out.problems.push(Problem {
                    severity: Severity::Error,
                    file: file.to_path_buf(),
                    path: String::new(),
                    line: Some(e.line()),
                    column: Some(e.column()),
                    message: format!("invalid JSON: {e}"),
                    included_from: from.to_vec(),
                });
                return;
            }
        };
        self.out
            .positions
            .insert(file.to_path_buf(), Positions::index(&text));
        let Value::Object(top) = doc else {
            self.problem(
                file,
                "",
                &from,
                "a template must be a JSON object with a \"steps\" array",
            );
            return;
        };
        self.top_level(file, main, &top, &from);
        match top.get("steps") {
            Some(Value::Array(steps)) => {
                self.stack.push(file.to_path_buf());
                let file_arc = Arc::new(file.to_path_buf());
                for (i, s) in steps.iter().enumerate() {
                    self.step(&file_arc, i, s, &from);
                }
                self.stack.pop();
            }
            Some(_) => self.problem(file, "steps", &from, "\"steps\" must be an array"),
            None => self.problem(file, "", &from, "missing \"steps\" array"),
        }
    }

    fn top_level(&mut self, file: &Path, main: bool, top: &Map<String, Value>, from: &[String]) {
        let allowed: Vec<&str> = TargetKind::ALL
            .iter()
            .map(|k| k.key())
            .chain(["steps"])
            .collect();
        for key in top.keys() {
            if !allowed.contains(&key.as_str()) {
                let hint = did_you_mean(key, &allowed)
                    .map(|s| format!("; did you mean {s:?}?"))
                    .unwrap_or_default();
                self.problem(
                    file,
                    key,
                    from,
                    format!(
                        "unknown top-level field {key:?}: expected one of {}{hint}",
                        allowed.join(", ")
                    ),
                );
            }
        }
        let targets: Vec<&str> = TargetKind::ALL
            .iter()
            .map(|k| k.key())
            .filter(|k| top.contains_key(*k))
            .collect();
        if !main {
            for t in &targets {
                self.problem(
                    file,
                    t,
                    from,
                    format!("an include cannot have a build target (\"{t}\")"),
                );
            }
            return;
        }
        match targets.as_slice() {
            [] => self.problem(
                file,
                "",
                from,
                "a template needs exactly one build target: \"dataset\", \"pool\", \"ufs\", \"pcfs\" or \"iso\"",
            ),
            [one] => {
                let v = top[*one].clone();
                let parsed = match *one {
                    "dataset" => typed(v).map(Target::Dataset),
                    "pool" => typed(v).map(Target::Pool),
                    "ufs" => typed(v).map(Target::Ufs),
                    "pcfs" => typed(v).map(Target::Pcfs),
                    _ => typed(v).map(Target::Iso),
                };
                match parsed {
                    Ok(t) => self.out.target = Some(t),
                    Err((path, msg)) => {
                        let full = join_path(one, &path);
                        self.problem(file, &full, from, msg);
                    }
                }
            }
            many => {
                let list = many.join("\", \"");
                self.problem(
                    file,
                    many[1],
                    from,
                    format!("a template has exactly one build target, this one has \"{list}\""),
                );
            }
        }
    }

    fn step(&mut self, file: &Arc<PathBuf>, i: usize, raw: &Value, from: &Arc<Vec<String>>) {
        let here = format!("steps[{i}]");
        let t = raw
            .get("t")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut loaded = LoadedStep {
            file: file.clone(),
            index: i,
            included_from: from.clone(),
            t: t.clone(),
            step: None,
            skipped_include: None,
        };
        match parse_step(raw) {
            Ok(step) => loaded.step = Some(step),
            Err((path, msg)) => {
                self.problem(file, &join_path(&here, &path), from, msg);
                self.out.steps.push(loaded);
                return;
            }
        }
        let step = loaded.step.clone().expect("set above");
        let StepKind::Include(inc) = &step.kind else {
            self.out.steps.push(loaded);
            return;
        };
        if let Some(why) = step.skip_reason(self.features) {
            loaded.skipped_include = Some(why);
            self.out.steps.push(loaded);
            return;
        }
        let Some(target) = self.resolve_include(file, &here, inc, from) else {
            self.out.steps.push(loaded);
            return;
        };
        let canon = target.canonicalize().unwrap_or_else(|_| target.clone());
        if let Some(start) = self
            .stack
            .iter()
            .position(|f| f.canonicalize().unwrap_or_else(|_| f.clone()) == canon)
        {
            let mut cycle: Vec<String> = self.stack[start..]
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            cycle.push(target.display().to_string());
            self.problem(
                file,
                &here,
                from,
                format!("include cycle: {}", cycle.join(" -> ")),
            );
            return;
        }
        if self.stack.len() >= MAX_INCLUDE_DEPTH {
            self.problem(
                file,
                &here,
                from,
                format!("includes nest deeper than {MAX_INCLUDE_DEPTH} levels"),
            );
            return;
        }
        let mut chain = from.as_ref().clone();
        chain.push(format!("{} {here}", file.display()));
        self.file(&target, false, Arc::new(chain));
    }

    fn resolve_include(
        &mut self,
        file: &Path,
        here: &str,
        inc: &Include,
        from: &[String],
    ) -> Option<PathBuf> {
        if let Some(f) = &inc.file {
            let path = format!("{here}.file");
            let expanded = match Expansion::parse(f).and_then(|x| x.one(self.features)) {
                Ok(s) => s,
                Err(e) => {
                    self.problem(file, &path, from, e.to_string());
                    return None;
                }
            };
            if !expanded.starts_with('/') {
                self.problem(
                    file,
                    &path,
                    from,
                    format!("include file {expanded:?} must be an absolute path"),
                );
                return None;
            }
            let p = PathBuf::from(&expanded);
            if !p.is_file() {
                self.problem(
                    file,
                    &path,
                    from,
                    format!("include file {expanded:?} does not exist"),
                );
                return None;
            }
            return Some(p);
        }
        let Some(name) = &inc.name else {
            self.problem(file, here, from, "an include needs \"name\" or \"file\"");
            return None;
        };
        if name.is_empty() || name.contains('/') {
            self.problem(
                file,
                &format!("{here}.name"),
                from,
                format!("invalid include name {name:?}"),
            );
            return None;
        }
        let candidates = [
            self.root
                .join(self.group)
                .join("include")
                .join(format!("{name}.json")),
            self.root.join("include").join(format!("{name}.json")),
        ];
        if let Some(p) = candidates.iter().find(|p| p.is_file()) {
            return Some(p.clone());
        }
        self.problem(
            file,
            &format!("{here}.name"),
            from,
            format!(
                "include {name:?} not found; looked for {} and {}",
                candidates[0].display(),
                candidates[1].display()
            ),
        );
        None
    }
}

fn join_path(base: &str, rest: &str) -> String {
    match (base.is_empty(), rest.is_empty()) {
        (_, true) => base.to_string(),
        (true, false) => rest.to_string(),
        (false, false) if rest.starts_with('[') => format!("{base}{rest}"),
        _ => format!("{base}.{rest}"),
    }
}

/// Deserializes a typed value, returning the failing field's path and a message.
fn typed<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let msg = improve_serde_message(&e.inner().to_string());
        let path = field_from_message(&msg).map_or(path.clone(), |f| join_path(&path, f));
        (path, msg)
    })
}

/// Parses one step object: `t`, the `with`/`without` conditions, then the typed arguments.
pub fn parse_step(raw: &Value) -> Result<Step, (String, String)> {
    let Value::Object(map) = raw else {
        return Err((
            String::new(),
            "a step must be a JSON object with a \"t\" field".into(),
        ));
    };
    let mut map = map.clone();
    let mut cond = |key: &str| -> Result<Option<String>, (String, String)> {
        match map.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            Some(other) => Err((
                key.to_string(),
                format!("\"{key}\" must be a feature name, not {other}"),
            )),
        }
    };
    let with = cond("with")?;
    let without = cond("without")?;
    match map.get("t") {
        Some(Value::String(t)) => {
            let known =
                StepKind::NAMES.contains(&t.as_str()) || STEP_ALIASES.iter().any(|(a, _)| a == t);
            if !known {
                let hint = did_you_mean(t, StepKind::NAMES)
                    .map(|s| format!("; did you mean {s:?}?"))
                    .unwrap_or_default();
                return Err((
                    "t".into(),
                    format!("unknown step type {t:?}{hint} (see docs/templates.md for the list)"),
                ));
            }
        }
        Some(other) => return Err(("t".into(), format!("\"t\" must be a string, not {other}"))),
        None => {
            return Err((
                String::new(),
                "missing \"t\": every step names its type".into(),
            ))
        }
    }
    let kind: StepKind = typed(Value::Object(map))?;
    Ok(Step {
        with,
        without,
        kind,
    })
}

/// Adds a "did you mean" to serde's unknown-field messages.
fn improve_serde_message(msg: &str) -> String {
    let Some(rest) = msg.strip_prefix("unknown field `") else {
        return msg.to_string();
    };
    let Some((field, tail)) = rest.split_once('`') else {
        return msg.to_string();
    };
    let candidates: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
    match did_you_mean(field, &candidates) {
        Some(s) => format!("{msg}; did you mean `{s}`?"),
        None => msg.to_string(),
    }
}

/// The field a serde message is about (`unknown field `x``, `missing field `x``).
fn field_from_message(msg: &str) -> Option<&str> {
    let rest = msg
        .strip_prefix("unknown field `")
        .or_else(|| msg.strip_prefix("missing field `"))?;
    rest.split_once('`').map(|(f, _)| f)
}
