//! The tools every step's `expand` and `check` use: macro expansion of named fields, and
//! problem collection with the field's path, so one pass reports every problem at once.

use std::path::{Path, PathBuf};

use super::expand::Expansion;
use super::features::Features;
use super::model::TargetKind;

/// Users the illumos base system defines in its default `/etc/passwd`.
pub const ILLUMOS_USERS: &[(&str, u32)] = &[
    ("root", 0),
    ("daemon", 1),
    ("bin", 2),
    ("sys", 3),
    ("adm", 4),
    ("uucp", 5),
    ("nuucp", 9),
    ("dladm", 15),
    ("smmsp", 25),
    ("listen", 37),
    ("gdm", 50),
    ("lp", 71),
    ("webservd", 80),
    ("postgres", 90),
    ("nobody", 60001),
    ("noaccess", 60002),
    ("nobody4", 65534),
];

/// Groups the illumos base system defines in its default `/etc/group`.
pub const ILLUMOS_GROUPS: &[(&str, u32)] = &[
    ("root", 0),
    ("other", 1),
    ("bin", 2),
    ("sys", 3),
    ("adm", 4),
    ("uucp", 5),
    ("mail", 6),
    ("tty", 7),
    ("lp", 8),
    ("nuucp", 9),
    ("staff", 10),
    ("daemon", 12),
    ("sysadmin", 14),
    ("smmsp", 25),
    ("gdm", 50),
    ("webservd", 80),
    ("postgres", 90),
    ("nobody", 60001),
    ("noaccess", 60002),
    ("nogroup", 65534),
];

/// Expands a step's fields, recording each macro problem under the field's path.
///
/// When the step is skipped by `with`/`without`, macros are only parsed (a typo is still
/// an error) and fields keep their text: the reference tool never expands skipped steps, and
/// drivers rely on that (an `onu` step guarded by `"with": "onu"` uses `${onu}`).
pub struct Expander<'a> {
    features: &'a Features,
    evaluate: bool,
    pub errors: Vec<(String, String)>,
}

impl<'a> Expander<'a> {
    pub fn new(features: &'a Features, evaluate: bool) -> Self {
        Expander {
            features,
            evaluate,
            errors: Vec::new(),
        }
    }

    pub fn one(&mut self, field: &str, text: &str) -> String {
        match Expansion::parse(text) {
            Err(e) => {
                self.errors.push((field.to_string(), e.to_string()));
                text.to_string()
            }
            Ok(_) if !self.evaluate => text.to_string(),
            Ok(x) => x.one(self.features).unwrap_or_else(|e| {
                self.errors.push((field.to_string(), e.to_string()));
                text.to_string()
            }),
        }
    }

    pub fn opt(&mut self, field: &str, text: &Option<String>) -> Option<String> {
        text.as_ref().map(|t| self.one(field, t))
    }

    /// Expands a list field; `${@f}` elements may become several elements or none.
    pub fn list(&mut self, field: &str, items: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for (i, text) in items.iter().enumerate() {
            let path = format!("{field}[{i}]");
            match Expansion::parse(text) {
                Err(e) => {
                    self.errors.push((path, e.to_string()));
                    out.push(text.clone());
                }
                Ok(_) if !self.evaluate => out.push(text.clone()),
                Ok(x) => match x.list(self.features) {
                    Ok(v) => out.extend(v),
                    Err(e) => {
                        self.errors.push((path, e.to_string()));
                        out.push(text.clone());
                    }
                },
            }
        }
        out
    }
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// What checks need to know about the build beyond the step itself.
pub struct Context<'a> {
    pub root: &'a Path,
    pub group: &'a str,
    pub external: &'a [PathBuf],
    pub target: TargetKind,
    /// Files to treat as present although they are absent (for trees that ship without
    /// build products, such as the public template corpus).
    pub assume_present: &'a dyn Fn(&Path) -> bool,
}

/// Collects a step's problems, each with the path of the field (`mode`, `pkgs[2]`).
pub struct Checker<'a> {
    pub ctx: &'a Context<'a>,
    pub problems: Vec<(Severity, String, String)>,
}

impl<'a> Checker<'a> {
    pub fn new(ctx: &'a Context<'a>) -> Self {
        Checker {
            ctx,
            problems: Vec::new(),
        }
    }

    pub fn error(&mut self, field: &str, msg: impl Into<String>) {
        self.problems
            .push((Severity::Error, field.to_string(), msg.into()));
    }

    pub fn warn(&mut self, field: &str, msg: impl Into<String>) {
        self.problems
            .push((Severity::Warning, field.to_string(), msg.into()));
    }

    /// An octal permission mode such as `644` or `4755`.
    pub fn mode(&mut self, field: &str, mode: &str) {
        if parse_mode(mode).is_none() {
            self.error(
                field,
                format!("invalid mode {mode:?}: expected an octal mode from \"0\" to \"7777\", such as \"644\""),
            );
        }
    }

    pub fn owner(&mut self, field: &str, owner: &str) {
        self.id(field, owner, ILLUMOS_USERS, "user");
    }

    pub fn group(&mut self, field: &str, group: &str) {
        self.id(field, group, ILLUMOS_GROUPS, "group");
    }

    fn id(&mut self, field: &str, name: &str, known: &[(&str, u32)], what: &str) {
        if name.parse::<u32>().is_ok() || known.iter().any(|(n, _)| *n == name) {
            return;
        }
        let names: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
        let hint = did_you_mean(name, &names)
            .map(|s| format!("; did you mean {s:?}?"))
            .unwrap_or_default();
        self.error(
            field,
            format!(
                "unknown {what} {name:?}: expected a numeric id or an illumos base system {what} ({}){hint}",
                names.join(", ")
            ),
        );
    }

    /// A path inside the image: must be absolute.
    pub fn image_path(&mut self, field: &str, path: &str) {
        if !path.starts_with('/') {
            self.error(
                field,
                format!("{path:?} must be an absolute path inside the image"),
            );
        }
    }

    /// A path relative to some source directory: must be relative and stay inside it.
    pub fn relative(&mut self, field: &str, path: &str) {
        if path.is_empty() || path.starts_with('/') {
            self.error(field, format!("{path:?} must be a relative path"));
        } else if Path::new(path).components().any(|c| c.as_os_str() == "..") {
            self.error(field, format!("{path:?} must not contain `..`"));
        }
    }

    /// A file in the template tree: `{T}/{group}/files/NAME`, then `{T}/files/NAME`.
    pub fn template_file(&mut self, field: &str, name: &str) -> Option<PathBuf> {
        self.relative(field, name);
        let c = self.ctx;
        let candidates = [
            c.root.join(c.group).join("files").join(name),
            c.root.join("files").join(name),
        ];
        if let Some(p) = candidates
            .iter()
            .find(|p| p.is_file() || (c.assume_present)(p))
        {
            return Some(p.clone());
        }
        self.error(
            field,
            format!(
                "source file {name:?} not found; looked for {} and {}",
                candidates[0].display(),
                candidates[1].display()
            ),
        );
        None
    }

    /// A file in the `-E` trees, first match wins.
    pub fn external_file(&mut self, field: &str, name: &str) -> Option<PathBuf> {
        self.relative(field, name);
        let c = self.ctx;
        if c.external.is_empty() {
            self.warn(
                field,
                format!("external source {name:?} not checked: no -E directory was given"),
            );
            return None;
        }
        if let Some(p) = c
            .external
            .iter()
            .map(|d| d.join(name))
            .find(|p| p.is_file() || (c.assume_present)(p))
        {
            return Some(p);
        }
        let dirs: Vec<String> = c.external.iter().map(|d| d.display().to_string()).collect();
        self.error(
            field,
            format!(
                "external source {name:?} not found in any -E directory ({})",
                dirs.join(", ")
            ),
        );
        None
    }

    /// The step only makes sense for some targets.
    pub fn target_is(&mut self, allowed: &[TargetKind], step: &str) {
        if !allowed.contains(&self.ctx.target) {
            let names: Vec<&str> = allowed.iter().map(|t| t.key()).collect();
            self.error(
                "t",
                format!(
                    "{step} only works in a {} template, not in a {} template",
                    names.join(" or "),
                    self.ctx.target.key()
                ),
            );
        }
    }
}

/// Parses an octal mode string; `None` unless it is 1 to 4 octal digits.
pub fn parse_mode(mode: &str) -> Option<u32> {
    if mode.is_empty() || mode.len() > 4 || !mode.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(mode, 8).ok()
}

/// The closest candidate, when it is close enough to be a likely typo.
pub fn did_you_mean<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= c.len().max(word.len()).div_ceil(3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("644"), Some(0o644));
        assert_eq!(parse_mode("4755"), Some(0o4755));
        assert_eq!(parse_mode("0"), Some(0));
        for bad in ["", "64x", "888", "77777", "-644", "0o644", " 644"] {
            assert_eq!(parse_mode(bad), None, "{bad}");
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("mdoe", &["mode", "owner"]), Some("mode"));
        assert_eq!(
            did_you_mean("ensure_fil", &["ensure_file", "ensure_dir"]),
            Some("ensure_file")
        );
        assert_eq!(did_you_mean("zzz", &["mode", "owner"]), None);
    }
}
