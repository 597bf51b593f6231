//! The stage cache key: a hash of everything a dataset stage's result depends on. The
//! output snapshot carries it as a user property; a stage is skipped only when the key
//! matches, so editing a template or a file it installs rebuilds the stage.

use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest, Sha256};

use super::digests::Digests;
use super::BuildOptions;
use crate::steps::files::EnsureFile;
use crate::template::{Plan, StepKind};

/// The ZFS user property holding a stage's cache key.
pub const KEY_PROPERTY: &str = "org.illumos.image-builder:key";

/// Everything that goes into a key, kept so `plan` can say why a key changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyInputs {
    pub tool_version: String,
    pub target: serde_json::Value,
    pub steps: serde_json::Value,
    pub features: Vec<String>,
    /// Files read from the template tree and `-E` dirs, with the SHA-256 of their bytes.
    pub files: Vec<(PathBuf, String)>,
    /// The GUID of the input snapshot (a new one each time the previous stage rebuilds).
    pub input_guid: Option<String>,
    /// `files` split by the step that reads them (one entry per step, in run order): what
    /// the per-step prefix keys of checkpoints hash.
    #[serde(default)]
    pub step_files: Vec<Vec<(PathBuf, String)>>,
}

impl KeyInputs {
    pub fn key(&self) -> String {
        let canonical = serde_json::to_vec(&json!({
            "tool": self.tool_version,
            "target": self.target,
            "steps": self.steps,
            "features": self.features,
            "files": self.files,
            "input": self.input_guid,
        }))
        .unwrap_or_default();
        hex(&Sha256::digest(&canonical))
    }

    /// The prefix key of every step, in run order: entry `i` hashes what the stage key
    /// hashes except the steps after `i` and the files they read, so it stays the same
    /// when only a later step (or a file only a later step reads) changes. A checkpoint
    /// taken after step `i` carries entry `i`.
    pub fn prefix_keys(&self) -> Vec<String> {
        let base = serde_json::to_vec(&json!({
            "tool": self.tool_version,
            "target": self.target,
            "features": self.features,
            "input": self.input_guid,
        }))
        .unwrap_or_default();
        let mut prev = hex(&Sha256::digest(&base));
        let steps = self.steps.as_array().cloned().unwrap_or_default();
        let mut keys = Vec::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            let files = self.step_files.get(i).cloned().unwrap_or_default();
            let link = serde_json::to_vec(&json!({ "prev": prev, "step": step, "files": files }))
                .unwrap_or_default();
            prev = hex(&Sha256::digest(&link));
            keys.push(prev.clone());
        }
        keys
    }
}

/// Why the prefix key of some step differs between an earlier build's inputs and these:
/// the first step whose key differs and the reason, or `None` when every step matches.
pub fn first_change(old: &KeyInputs, new: &KeyInputs) -> Option<(usize, String)> {
    if old.input_guid != new.input_guid {
        return Some((0, "the input snapshot changed (it was rebuilt)".into()));
    }
    if old.features != new.features {
        return Some((
            0,
            format!(
                "the features changed (were [{}], now [{}])",
                old.features.join(" "),
                new.features.join(" ")
            ),
        ));
    }
    if old.tool_version != new.tool_version || old.target != new.target {
        return Some((0, "the tool version or the build target changed".into()));
    }
    let none = Vec::new();
    let old_steps = old.steps.as_array().unwrap_or(&none);
    let new_steps = new.steps.as_array().unwrap_or(&none);
    for (i, step) in new_steps.iter().enumerate() {
        let Some(was) = old_steps.get(i) else {
            return Some((i, "the step is new (the stage has more steps)".into()));
        };
        if was != step {
            return Some((i, "its type, arguments or condition changed".into()));
        }
        let of = |k: &KeyInputs| k.step_files.get(i).cloned().unwrap_or_default();
        let (was_files, files) = (of(old), of(new));
        if was_files != files {
            let changed = files
                .iter()
                .find(|f| !was_files.contains(f))
                .or_else(|| was_files.iter().find(|f| !files.contains(f)));
            return Some((
                i,
                match changed {
                    Some((path, _)) => format!("a file it reads changed: {}", path.display()),
                    None => "the files it reads changed".into(),
                },
            ));
        }
    }
    None
}

/// Gathers a stage's key inputs: the expanded plan, how the build runs the steps whose
/// result depends on it (`--smf-at-first-boot`, `--devfs-at-first-boot`), and the bytes
/// of the source files its running steps read.
pub fn inputs(
    plan: &Plan,
    opts: &BuildOptions,
    output_dir: &Path,
    input_guid: Option<String>,
) -> std::io::Result<KeyInputs> {
    let mut files = Vec::new();
    let mut step_files = Vec::new();
    let mut steps = Vec::new();
    let started = std::time::Instant::now();
    let mut digests = Digests::load(&super::layout::state_dir(output_dir));
    for s in &plan.steps {
        step_files.push(Vec::new());
        let mut step = json!({ "t": s.t, "args": s.args, "skip": s.skip.is_some() });
        if s.skip.is_none() {
            // The same step makes a different tree when the build leaves its work to the
            // image's first boot.
            match s.kind {
                Some(StepKind::SeedSmf(_)) => step["setup"] = json!(format!("{:?}", opts.smf)),
                Some(StepKind::Devfsadm(_)) => step["setup"] = json!(format!("{:?}", opts.devfs)),
                _ => {}
            }
        }
        steps.push(step);
        if s.skip.is_some() {
            continue;
        }
        for path in source_files(
            s.kind.as_ref(),
            &opts.template_root,
            &plan.group,
            &opts.external,
        ) {
            let entry = (portable(&path, opts), digests.sha256(&path)?);
            step_files
                .last_mut()
                .into_iter()
                .for_each(|v| v.push(entry.clone()));
            files.push(entry);
        }
        // Archives and images from earlier builds can be large: their size and mtime
        // stand for their bytes (a rebuild rewrites them).
        for name in output_files(s.kind.as_ref()) {
            let path = output_dir.join(name);
            let print = match std::fs::metadata(&path) {
                Ok(m) => {
                    use std::os::unix::fs::MetadataExt;
                    format!("size={} mtime={}.{:09}", m.len(), m.mtime(), m.mtime_nsec())
                }
                Err(_) => "missing".to_string(),
            };
            let name = Path::new("output").join(name);
            step_files
                .last_mut()
                .into_iter()
                .for_each(|v| v.push((name.clone(), print.clone())));
            files.push((name, print));
        }
    }
    tracing::debug!(
        hashed = digests.hashed,
        remembered = digests.remembered,
        seconds = started.elapsed().as_secs_f64(),
        "source file digests"
    );
    digests.save();
    Ok(KeyInputs {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        target: serde_json::to_value(&plan.target).unwrap_or_default(),
        steps: serde_json::Value::Array(steps),
        features: plan.features.clone(),
        files,
        input_guid,
        step_files,
    })
}

/// The host files a step reads from the template tree or `-E` dirs.
fn source_files(
    kind: Option<&StepKind>,
    root: &Path,
    group: &str,
    external: &[PathBuf],
) -> Vec<PathBuf> {
    let template = |name: &str| {
        [
            root.join(group).join("files").join(name),
            root.join("files").join(name),
        ]
        .into_iter()
        .find(|p| p.is_file())
    };
    match kind {
        Some(StepKind::EnsureFile(f)) => ensure_file_source(f, &template, external)
            .into_iter()
            .collect(),
        Some(StepKind::PkgApproveCaCert(c)) => template(&c.certfile).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// The output-directory files a step reads.
fn output_files(kind: Option<&StepKind>) -> Vec<&str> {
    match kind {
        Some(StepKind::UnpackTar(u)) => vec![u.name.as_str()],
        Some(StepKind::Digest(d)) => vec![d.src.as_str()],
        Some(StepKind::Gzip(g)) => vec![g.src.as_str()],
        Some(StepKind::EnsureFile(f)) => f.outputsrc.as_deref().into_iter().collect(),
        _ => Vec::new(),
    }
}

/// How the key names a source file: by where it is under the template root
/// (`templates/GROUP/files/NAME`) or an `-E` directory (`extsrc/NAME`), not by where that
/// root is on this machine, so that the same templates have the same keys on every
/// machine (a CI runner checks them out wherever it likes). Output-directory files are
/// `output/NAME` (see `inputs`). The file's digest says which bytes it holds.
fn portable(path: &Path, opts: &BuildOptions) -> PathBuf {
    if let Ok(rel) = path.strip_prefix(&opts.template_root) {
        return Path::new("templates").join(rel);
    }
    for dir in &opts.external {
        if let Ok(rel) = path.strip_prefix(dir) {
            return Path::new("extsrc").join(rel);
        }
    }
    path.to_path_buf()
}

fn ensure_file_source(
    f: &EnsureFile,
    template: &dyn Fn(&str) -> Option<PathBuf>,
    external: &[PathBuf],
) -> Option<PathBuf> {
    match f.sources().first() {
        Some(("src", s)) => template(s),
        Some(("extsrc", s)) => external.iter().map(|d| d.join(s)).find(|p| p.is_file()),
        _ => None,
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::{DevfsSetup, SmfSeeding};
    use crate::template::{plan, Features, PlanOptions};

    fn key_of(steps: &str, opts: &BuildOptions) -> String {
        let p = plan(
            &opts.template_root,
            "g",
            steps,
            &Features::default(),
            &PlanOptions::default(),
        );
        assert!(p.is_valid(), "{:?}", p.problems);
        inputs(&p, opts, Path::new("/nonexistent"), None)
            .unwrap()
            .key()
    }

    #[test]
    fn leaving_smf_or_devfs_to_first_boot_changes_the_key_of_stages_that_run_them() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("g")).unwrap();
        let write = |name: &str, steps: &str| {
            std::fs::write(
                t.path().join("g").join(format!("{name}.json")),
                format!(r#"{{ "dataset": {{ "name": "w" }}, "steps": [ {steps} ] }}"#),
            )
            .unwrap()
        };
        write("smf", r#"{ "t": "seed_smf" }"#);
        write("devfs", r#"{ "t": "devfsadm" }"#);
        write(
            "neither",
            r#"{ "t": "ensure_dir", "dir": "/etc", "owner": "root", "group": "sys", "mode": "755" }"#,
        );
        let now = BuildOptions::new("rpool/images", t.path());
        let smf_later = BuildOptions {
            smf: SmfSeeding::AtFirstBoot,
            ..now.clone()
        };
        let devfs_later = BuildOptions {
            devfs: DevfsSetup::AtFirstBoot,
            ..now.clone()
        };
        assert_ne!(key_of("smf", &now), key_of("smf", &smf_later));
        assert_eq!(key_of("smf", &now), key_of("smf", &devfs_later));
        assert_ne!(key_of("devfs", &now), key_of("devfs", &devfs_later));
        assert_eq!(key_of("devfs", &now), key_of("devfs", &smf_later));
        // A stage that runs neither keeps its key (and its cached snapshot).
        assert_eq!(key_of("neither", &now), key_of("neither", &smf_later));
        assert_eq!(key_of("neither", &now), key_of("neither", &devfs_later));
    }

    #[test]
    fn the_same_templates_and_archive_elsewhere_on_another_machine_have_the_same_key() {
        // Two machines: the template tree, an -E directory and the output directory each
        // at a path of its own, holding the same bytes (the archive with the same time).
        let machine = || {
            let t = tempfile::tempdir().unwrap();
            for d in ["t/g/files", "ext", "out"] {
                std::fs::create_dir_all(t.path().join(d)).unwrap();
            }
            std::fs::write(t.path().join("t/g/files/motd"), "hello\n").unwrap();
            std::fs::write(t.path().join("ext/cfg"), "x=1\n").unwrap();
            std::fs::write(t.path().join("out/root.tar"), "tar bytes").unwrap();
            let then = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 5);
            std::fs::File::options()
                .write(true)
                .open(t.path().join("out/root.tar"))
                .unwrap()
                .set_modified(then)
                .unwrap();
            std::fs::write(
                t.path().join("t/g/s.json"),
                r#"{ "dataset": { "name": "w" }, "steps": [
                    { "t": "unpack_tar", "name": "root.tar" },
                    { "t": "ensure_file", "file": "/etc/motd", "src": "motd", "owner": "root", "group": "sys", "mode": "644" },
                    { "t": "ensure_file", "file": "/etc/cfg", "extsrc": "cfg", "owner": "root", "group": "sys", "mode": "644" } ] }"#,
            )
            .unwrap();
            let opts = BuildOptions {
                external: vec![t.path().join("ext")],
                ..BuildOptions::new("rpool/images", t.path().join("t"))
            };
            let p = plan(
                &opts.template_root,
                "g",
                "s",
                &Features::default(),
                &PlanOptions {
                    external: &opts.external,
                    ..PlanOptions::default()
                },
            );
            assert!(p.is_valid(), "{:?}", p.problems);
            let i = inputs(&p, &opts, &t.path().join("out"), Some("7".into())).unwrap();
            (t, i)
        };
        let ((_a, a), (_b, b)) = (machine(), machine());
        let names: Vec<String> = a
            .files
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        assert_eq!(
            names,
            ["output/root.tar", "templates/g/files/motd", "extsrc/cfg"]
        );
        assert_eq!(a.key(), b.key());
        assert_eq!(a.prefix_keys(), b.prefix_keys());
    }

    #[test]
    fn prefix_keys_and_first_change_name_the_first_step_that_differs_and_why() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("g")).unwrap();
        std::fs::create_dir_all(t.path().join("files")).unwrap();
        std::fs::write(t.path().join("files/motd"), "hello\n").unwrap();
        let write = |second: &str| {
            std::fs::write(
                t.path().join("g/s.json"),
                format!(
                    r#"{{ "dataset": {{ "name": "w" }}, "steps": [
                    {{ "t": "ensure_dir", "dir": "/etc", "owner": "root", "group": "sys", "mode": "755" }},
                    {{ "t": "ensure_file", "file": "/etc/motd", "src": "motd", "owner": "root", "group": "sys", "mode": "644" }},
                    {{ "t": "ensure_dir", "dir": "{second}", "owner": "root", "group": "sys", "mode": "755" }} ] }}"#
                ),
            )
            .unwrap()
        };
        let opts = BuildOptions::new("rpool/images", t.path());
        let now = |guid: Option<&str>| {
            let p = plan(
                t.path(),
                "g",
                "s",
                &Features::default(),
                &PlanOptions::default(),
            );
            assert!(p.is_valid(), "{:?}", p.problems);
            inputs(&p, &opts, Path::new("/nonexistent"), guid.map(String::from)).unwrap()
        };
        write("/opt");
        let old = now(Some("1"));
        assert_eq!(first_change(&old, &now(Some("1"))), None);
        assert_eq!(old.prefix_keys(), now(Some("1")).prefix_keys());

        write("/var");
        let new = now(Some("1"));
        assert_eq!(
            first_change(&old, &new),
            Some((2, "its type, arguments or condition changed".into()))
        );
        let (a, b) = (old.prefix_keys(), new.prefix_keys());
        assert_eq!(a[..2], b[..2]);
        assert_ne!(a[2], b[2]);

        write("/opt");
        std::fs::write(t.path().join("files/motd"), "changed\n").unwrap();
        let new = now(Some("1"));
        let (i, why) = first_change(&old, &new).unwrap();
        assert_eq!(i, 1);
        assert_eq!(why, "a file it reads changed: templates/files/motd");
        let (a, b) = (old.prefix_keys(), new.prefix_keys());
        assert_eq!(a[0], b[0]);
        assert_ne!(a[1], b[1]);

        std::fs::write(t.path().join("files/motd"), "hello\n").unwrap();
        let new = now(Some("2"));
        assert_eq!(
            first_change(&old, &new),
            Some((0, "the input snapshot changed (it was rebuilt)".into()))
        );
        assert!(old
            .prefix_keys()
            .iter()
            .zip(new.prefix_keys())
            .all(|(a, b)| *a != b));
        // Read back from a build record, as `plan -d` does.
        let back: KeyInputs = serde_json::from_value(serde_json::to_value(&old).unwrap()).unwrap();
        assert_eq!(back, old);
    }
}
