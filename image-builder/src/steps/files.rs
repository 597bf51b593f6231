//! File steps: `ensure_dir` (alias `ensure_directory`), `ensure_file`, `ensure_symlink`,
//! `ensure_perms`, `remove_files`. Every path is inside the image and absolute.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::StepArgs;
use crate::template::check::{Checker, Expander};

/// Make sure a directory exists with the given owner, group and mode.
///
/// Missing parents are created too, as the illumos image-builder creates them: owned by the
/// user running the build, with the directory's permission bits less group and other
/// write (what its `mkdir -p`-style creation gives them under the usual umask 022).
/// Owner, group and mode are then set on the directory itself only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnsureDir {
    /// Absolute path inside the image.
    pub dir: String,
    /// User name (resolved through the image's `/etc/passwd`) or numeric id.
    pub owner: String,
    /// Group name (resolved through the image's `/etc/group`) or numeric id.
    pub group: String,
    /// Octal mode, e.g. `"755"`.
    pub mode: String,
}

impl StepArgs for EnsureDir {
    fn expand(&self, _x: &mut Expander) -> Self {
        self.clone()
    }

    fn check(&self, c: &mut Checker) {
        c.image_path("dir", &self.dir);
        c.owner("owner", &self.owner);
        c.group("group", &self.group);
        c.mode("mode", &self.mode);
    }
}

/// Write a file into the image from exactly one source.
///
/// Sources: `src` (template tree: `{T}/{group}/files/`, then `{T}/files/`), `extsrc` (the
/// `-E` trees, in order), `outputsrc` (the output directory), `imagesrc` (another file in
/// the image), `tarsrc` (the scratch tree of the last `unpack_tar` with `into_tmp`), or
/// `contents` (literal text, never macro-expanded). When several are given the first in
/// that order wins, with a warning.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnsureFile {
    /// Absolute path of the file inside the image. Macros are expanded.
    pub file: String,
    /// Relative path in the template tree's `files` directories. Macros are expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    /// Relative path in the `-E` directories. Macros are expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extsrc: Option<String>,
    /// Relative path in the output directory. Macros are expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputsrc: Option<String>,
    /// Absolute path of a file already in the image. Macros are expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imagesrc: Option<String>,
    /// Absolute path in the tree of the last `unpack_tar` with `into_tmp`. Macros are
    /// expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tarsrc: Option<String>,
    /// Literal file contents. Not expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contents: Option<String>,
    /// User name or numeric id.
    pub owner: String,
    /// Group name or numeric id.
    pub group: String,
    /// Octal mode, e.g. `"644"`.
    pub mode: String,
}

impl EnsureFile {
    /// The sources given, in the order of precedence.
    pub fn sources(&self) -> Vec<(&'static str, &str)> {
        [
            ("src", &self.src),
            ("extsrc", &self.extsrc),
            ("outputsrc", &self.outputsrc),
            ("imagesrc", &self.imagesrc),
            ("tarsrc", &self.tarsrc),
            ("contents", &self.contents),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

impl StepArgs for EnsureFile {
    fn expand(&self, x: &mut Expander) -> Self {
        EnsureFile {
            file: x.one("file", &self.file),
            src: x.opt("src", &self.src),
            extsrc: x.opt("extsrc", &self.extsrc),
            outputsrc: x.opt("outputsrc", &self.outputsrc),
            imagesrc: x.opt("imagesrc", &self.imagesrc),
            tarsrc: x.opt("tarsrc", &self.tarsrc),
            ..self.clone()
        }
    }

    fn check(&self, c: &mut Checker) {
        c.image_path("file", &self.file);
        c.owner("owner", &self.owner);
        c.group("group", &self.group);
        c.mode("mode", &self.mode);
        let sources = self.sources();
        match sources.as_slice() {
            [] => c.error(
                "file",
                "no source: give one of src, extsrc, outputsrc, imagesrc, tarsrc or contents",
            ),
            [(winner, _), rest @ ..] if !rest.is_empty() => {
                let others: Vec<&str> = rest.iter().map(|(k, _)| *k).collect();
                c.warn(
                    winner,
                    format!(
                        "several sources given; `{winner}` is used and {} ignored",
                        others.join(", ")
                    ),
                );
            }
            _ => {}
        }
        let Some(&(kind, value)) = sources.first() else {
            return;
        };
        match kind {
            "src" => {
                c.template_file("src", value);
            }
            "extsrc" => {
                c.external_file("extsrc", value);
            }
            "outputsrc" => c.relative("outputsrc", value),
            "imagesrc" | "tarsrc" => c.image_path(kind, value),
            _ => {}
        }
    }
}

/// Make sure a symbolic link exists with the given target (the target is not resolved).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnsureSymlink {
    /// Absolute path of the link inside the image.
    pub link: String,
    /// What the link points to, stored as written.
    pub target: String,
    /// User name or numeric id of the link itself.
    pub owner: String,
    /// Group name or numeric id of the link itself.
    pub group: String,
}

impl StepArgs for EnsureSymlink {
    fn expand(&self, _x: &mut Expander) -> Self {
        self.clone()
    }

    fn check(&self, c: &mut Checker) {
        c.image_path("link", &self.link);
        if self.target.is_empty() {
            c.error("target", "the link target is empty");
        }
        c.owner("owner", &self.owner);
        c.group("group", &self.group);
    }
}

/// Set owner, group and mode of an existing path in the image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnsurePerms {
    /// Absolute path inside the image.
    pub path: String,
    /// User name or numeric id.
    pub owner: String,
    /// Group name or numeric id.
    pub group: String,
    /// Octal mode, e.g. `"755"`.
    pub mode: String,
}

impl StepArgs for EnsurePerms {
    fn expand(&self, _x: &mut Expander) -> Self {
        self.clone()
    }

    fn check(&self, c: &mut Checker) {
        c.image_path("path", &self.path);
        c.owner("owner", &self.owner);
        c.group("group", &self.group);
        c.mode("mode", &self.mode);
    }
}

/// Remove a file, a directory tree, or every regular file whose name matches a glob
/// pattern. Exactly one of `file`, `dir` and `pattern`. A missing target is not an error.
///
/// A `pattern` search stays on the image root's file system: it does not descend into
/// other file systems mounted inside the image, as the illumos image-builder does not.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveFiles {
    /// Absolute path of one file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Absolute path of a directory tree to remove (symlinks are removed, not followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Glob (`*`, `?`, `[...]`) matched against file names anywhere in the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

impl StepArgs for RemoveFiles {
    fn expand(&self, _x: &mut Expander) -> Self {
        self.clone()
    }

    fn check(&self, c: &mut Checker) {
        match (&self.file, &self.dir, &self.pattern) {
            (Some(f), None, None) => c.image_path("file", f),
            (None, Some(d), None) => {
                c.image_path("dir", d);
                if d.trim_end_matches('/').is_empty() {
                    c.error("dir", "refusing to remove the whole image root");
                }
            }
            (None, None, Some(p)) => {
                if let Err(e) = crate::steps::files::glob_check(p) {
                    c.error("pattern", format!("invalid pattern {p:?}: {e}"));
                }
            }
            _ => c.error("t", "give exactly one of `file`, `dir` and `pattern`"),
        }
    }
}

/// Checks that a glob pattern is well formed: brackets closed, not empty.
pub fn glob_check(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("the pattern is empty".into());
    }
    if p.contains('/') {
        return Err("patterns match file names, so they cannot contain `/`".into());
    }
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '[' {
            let mut closed = false;
            let mut first = true;
            for d in chars.by_ref() {
                if d == ']' && !first {
                    closed = true;
                    break;
                }
                first = false;
            }
            if !closed {
                return Err("`[` without a closing `]`".into());
            }
        }
    }
    Ok(())
}

// ---- execution -------------------------------------------------------------------------

use std::path::Path;

use super::exec::{Execute, StepCx, StepError};
use super::perms::Perms;

impl Execute for EnsureDir {
    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        let perms = Perms::resolve(cx, &self.owner, &self.group, Some(&self.mode))?;
        match cx.root.try_metadata(&self.dir)? {
            Some(m) if m.is_dir() => {}
            Some(_) => {
                return Err(StepError::msg(format!(
                    "{} exists and is not a directory",
                    self.dir
                )))
            }
            None => {
                let mode = perms.mode.unwrap_or(0o755);
                if let Some(parent) = Path::new(&self.dir).parent() {
                    cx.root.create_dir_all(parent, parent_dir_mode(mode))?;
                }
                cx.root.create_dir(&self.dir, mode)?
            }
        }
        perms.apply(cx, Path::new(&self.dir))
    }
}

/// The mode `ensure_dir` gives the parents it creates for a directory of mode `mode`.
///
/// The illumos image-builder creates them with `DirBuilder::recursive(true).mode(mode)`
/// (its `ensure::directory`), i.e. mkdir(2) with `mode` less the process umask; this is
/// that under the usual umask 022, without setuid, setgid or sticky bits, so a build does
/// not depend on the caller's umask and never makes a parent writable by others.
pub fn parent_dir_mode(mode: u32) -> u32 {
    mode & 0o755
}

impl Execute for EnsureFile {
    /// `tarsrc` reads the scratch tree of an earlier `unpack_tar` with `into_tmp`.
    fn uses_scratch(&self) -> bool {
        self.tarsrc.is_some()
    }

    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        let perms = Perms::resolve(cx, &self.owner, &self.group, Some(&self.mode))?;
        let contents = self.contents(cx)?;
        let current = match cx.root.try_metadata(&self.file)? {
            Some(m) if m.is_file() => Some(cx.root.read(&self.file)?),
            Some(m) if m.is_dir() => {
                return Err(StepError::msg(format!("{} is a directory", self.file)))
            }
            _ => None,
        };
        if current.as_deref() != Some(&contents[..]) {
            cx.root
                .write_atomic(&self.file, &contents, perms.mode.unwrap_or(0o644))?;
        }
        perms.apply(cx, Path::new(&self.file))
    }
}

impl EnsureFile {
    /// The bytes to install, from the winning source.
    fn contents(&self, cx: &StepCx) -> Result<Vec<u8>, StepError> {
        let read_host = |p: &Path| std::fs::read(p).map_err(|e| StepError::host(p, e));
        match self.sources().first() {
            Some(("src", s)) => read_host(&cx.template_file(s)?),
            Some(("extsrc", s)) => read_host(&cx.external_file(s)?),
            Some(("outputsrc", s)) => read_host(&cx.output_file(s)),
            Some(("imagesrc", s)) => Ok(cx.root.read(s)?),
            Some(("tarsrc", s)) => {
                let tree = confine::Root::open(cx.tmp_dir.join("unpack_tar"))?;
                Ok(tree.read(s)?)
            }
            Some(("contents", s)) => Ok(s.as_bytes().to_vec()),
            _ => Err(StepError::msg(format!("{}: no source given", self.file))),
        }
    }
}

impl Execute for EnsureSymlink {
    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        let perms = Perms::resolve(cx, &self.owner, &self.group, None)?;
        match cx.root.try_metadata(&self.link)? {
            Some(m) if m.is_symlink() => {
                if cx.root.read_link(&self.link)? != Path::new(&self.target) {
                    cx.root.remove_file(&self.link)?;
                    cx.root.symlink(&self.target, &self.link)?;
                }
            }
            Some(m) if m.is_dir() => {
                return Err(StepError::msg(format!(
                    "{} is a directory; refusing to replace it with a symlink",
                    self.link
                )))
            }
            Some(_) => {
                cx.root.remove_file(&self.link)?;
                cx.root.symlink(&self.target, &self.link)?;
            }
            None => cx.root.symlink(&self.target, &self.link)?,
        }
        perms.apply(cx, Path::new(&self.link))
    }
}

impl Execute for EnsurePerms {
    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        let perms = Perms::resolve(cx, &self.owner, &self.group, Some(&self.mode))?;
        perms.apply(cx, Path::new(&self.path))
    }
}

impl Execute for RemoveFiles {
    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        if let Some(f) = &self.file {
            return match cx.root.remove_file(f) {
                Err(e) if e.is_not_found() => Ok(()),
                other => Ok(other?),
            };
        }
        if let Some(d) = &self.dir {
            return match cx.root.remove_dir_all(d) {
                Err(e) if e.is_not_found() => Ok(()),
                other => Ok(other?),
            };
        }
        let pattern = self.pattern.as_deref().unwrap_or_default();
        // The illumos image-builder walks with walkdir's `same_file_system(true)`: a
        // directory whose device differs from the root's (a mount point) is not entered.
        let root_dev = cx.root.metadata("/")?.dev;
        let matcher = glob_matcher(pattern).map_err(StepError::msg)?;
        let mut stack = vec![std::path::PathBuf::from("/")];
        while let Some(dir) = stack.pop() {
            for e in cx.root.read_dir(&dir)? {
                let path = dir.join(&e.name);
                let meta = &e.metadata;
                if meta.is_dir() {
                    if meta.dev == root_dev {
                        stack.push(path);
                    } else {
                        tracing::info!(
                            "remove_files: not searching {}: another file system is mounted there",
                            path.display()
                        );
                    }
                } else if meta.is_file() && matcher.is_match(e.name.to_string_lossy().as_ref()) {
                    cx.root.remove_file(&path)?;
                }
            }
        }
        Ok(())
    }
}

/// Shell-style matching of one file name: `*`, `?`, `[abc]`, `[a-z]`, `[!a]`, by
/// `globset` (compiled to a regular expression: linear in the name, however many stars).
pub fn glob_matcher(pattern: &str) -> Result<globset::GlobMatcher, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("pattern {pattern:?}: {e}"))
}

/// One name against one pattern (a malformed pattern matches nothing; `glob_check`
/// refuses those when the template is loaded).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    glob_matcher(pattern).is_ok_and(|m| m.is_match(name))
}

#[cfg(test)]
mod glob_tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.orig", "a.orig"));
        assert!(!glob_match("*.orig", "a.orig.bak"));
        assert!(glob_match("lib?.so", "libc.so"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[!a-c]x", "bx"));
        assert!(glob_match("*", ""));
        assert!(glob_match("[^a-c]x", "dx"));
        assert!(glob_check("[abc").is_err());
        assert!(glob_check("a/b").is_err());
    }

    #[test]
    fn many_stars_take_linear_time() {
        // The hand-written matcher tried every split at every star: 2^20 paths here.
        let pattern = format!("{}b", "*a".repeat(20));
        let name = "a".repeat(60);
        let t = std::time::Instant::now();
        assert!(!glob_match(&pattern, &name));
        assert!(glob_match(&pattern, &format!("{name}b")));
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
    }
}
