//! A problem found in a template, located precisely enough to fix it without searching.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

pub use super::check::Severity;

/// One problem: where (file, JSON path, line and column), what, and through which includes
/// the file was reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub file: PathBuf,
    /// JSON path inside `file`, e.g. `steps[4].mode`; empty for the whole file.
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    pub message: String,
    /// The include steps that led to `file`, outermost first (`file steps[N]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub included_from: Vec<String>,
}

impl Problem {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: {}", self.file.display())?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, ":{l}:{c}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)?;
        for site in self.included_from.iter().rev() {
            write!(f, "\n  included from {site}")?;
        }
        Ok(())
    }
}
