//! `digest` and `gzip`: derive a file in the image from a file in the output directory.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::StepArgs;
use crate::template::check::{Checker, Expander};

/// Write the hex digest of an output file (followed by a newline) into the image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Digest {
    /// `md5`, `sha1` or `sha256`.
    pub algorithm: String,
    /// Absolute path inside the image to write. Macros are expanded.
    pub target: String,
    /// Relative path in the output directory to hash. Macros are expanded.
    pub src: String,
    /// User name or numeric id.
    pub owner: String,
    /// Group name or numeric id.
    pub group: String,
    /// Octal mode, e.g. `"644"`.
    pub mode: String,
}

pub const DIGEST_ALGORITHMS: &[&str] = &["md5", "sha1", "sha256"];

impl StepArgs for Digest {
    fn expand(&self, x: &mut Expander) -> Self {
        Digest {
            target: x.one("target", &self.target),
            src: x.one("src", &self.src),
            ..self.clone()
        }
    }

    fn check(&self, c: &mut Checker) {
        if !DIGEST_ALGORITHMS.contains(&self.algorithm.as_str()) {
            c.error(
                "algorithm",
                format!(
                    "unknown digest algorithm {:?}: expected one of {}",
                    self.algorithm,
                    DIGEST_ALGORITHMS.join(", ")
                ),
            );
        }
        c.image_path("target", &self.target);
        c.relative("src", &self.src);
        c.owner("owner", &self.owner);
        c.group("group", &self.group);
        c.mode("mode", &self.mode);
    }
}

/// Write a gzip-compressed copy of an output file into the image (replacing any file
/// already there).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gzip {
    /// Absolute path inside the image to write. Macros are expanded.
    pub target: String,
    /// Relative path in the output directory to compress. Macros are expanded.
    pub src: String,
    /// User name or numeric id.
    pub owner: String,
    /// Group name or numeric id.
    pub group: String,
    /// Octal mode, e.g. `"644"`.
    pub mode: String,
}

impl StepArgs for Gzip {
    fn expand(&self, x: &mut Expander) -> Self {
        Gzip {
            target: x.one("target", &self.target),
            src: x.one("src", &self.src),
            ..self.clone()
        }
    }

    fn check(&self, c: &mut Checker) {
        c.image_path("target", &self.target);
        c.relative("src", &self.src);
        c.owner("owner", &self.owner);
        c.group("group", &self.group);
        c.mode("mode", &self.mode);
    }
}

use std::io::Read;
use std::path::Path;

use super::exec::{Execute, StepCx, StepError};
use super::perms::Perms;

impl Execute for Digest {
    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        let perms = Perms::resolve(cx, &self.owner, &self.group, Some(&self.mode))?;
        let src = cx.output_file(&self.src);
        let mut line = hash_file(&src, &self.algorithm)?;
        line.push('\n');
        let current = cx
            .root
            .try_metadata(&self.target)?
            .map(|_| cx.root.read(&self.target))
            .transpose()?;
        if current.as_deref() != Some(line.as_bytes()) {
            cx.root
                .write_atomic(&self.target, line.as_bytes(), perms.mode.unwrap_or(0o644))?;
        }
        perms.apply(cx, Path::new(&self.target))
    }
}

/// The lowercase hex digest of a host file.
pub fn hash_file(path: &Path, algorithm: &str) -> Result<String, StepError> {
    use sha2::Digest as _;
    let mut f = std::fs::File::open(path).map_err(|e| StepError::host(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut md5 = md5::Md5::new();
    let mut sha1 = sha1::Sha1::new();
    let mut sha256 = sha2::Sha256::new();
    loop {
        let n = f.read(&mut buf).map_err(|e| StepError::host(path, e))?;
        if n == 0 {
            break;
        }
        match algorithm {
            "md5" => md5.update(&buf[..n]),
            "sha1" => sha1.update(&buf[..n]),
            _ => sha256.update(&buf[..n]),
        }
    }
    let bytes: Vec<u8> = match algorithm {
        "md5" => md5.finalize().to_vec(),
        "sha1" => sha1.finalize().to_vec(),
        "sha256" => sha256.finalize().to_vec(),
        other => {
            return Err(StepError::msg(format!(
                "unknown digest algorithm {other:?}"
            )))
        }
    };
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Execute for Gzip {
    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        let perms = Perms::resolve(cx, &self.owner, &self.group, Some(&self.mode))?;
        let src = cx.output_file(&self.src);
        let target = Path::new(&self.target);
        crate::archive::gzip_into(&src, cx.root, target, perms.mode.unwrap_or(0o644), 0)?;
        perms.apply(cx, target)
    }
}
