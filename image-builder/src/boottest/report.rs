//! The report of a test run: JSON for programs, a Markdown table for people.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// The command did not finish in its time.
    Timeout,
    /// Not run: the guest never reached its prompt, or the run was interrupted.
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Timeout => "timeout",
            Outcome::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub command: String,
    pub result: Outcome,
    /// The command's exit status, when it finished.
    pub status: Option<i32>,
    pub seconds: f64,
    pub output: String,
    /// Why it failed, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootResult {
    /// `pass` when the prompt came up, `timeout` when it did not in time, `fail` when the
    /// VM could not start or died.
    pub result: Outcome,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One image's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub image: PathBuf,
    pub instance_id: String,
    pub boot: BootResult,
    pub checks: Vec<CheckResult>,
    /// The whole serial console transcript of the run.
    pub console_log: PathBuf,
    pub interrupted: bool,
    pub passed: bool,
}

impl Report {
    /// Whether the guest booted and every check passed.
    pub fn compute_passed(&self) -> bool {
        !self.interrupted
            && self.boot.result == Outcome::Pass
            && self.checks.iter().all(|c| c.result == Outcome::Pass)
    }
}

/// Table cells cannot hold `|` or line breaks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The Markdown summary of one or more runs: one row per check (and one for the boot).
pub fn markdown(reports: &[Report]) -> String {
    let mut md = String::from("# Boot test report\n\n");
    let passed = reports.iter().filter(|r| r.passed).count();
    let _ = writeln!(md, "{passed} of {} image(s) passed.\n", reports.len());
    md.push_str("| image | check | result | time | console log |\n|---|---|---|---|---|\n");
    for r in reports {
        let image = cell(&r.image.display().to_string());
        let log = cell(&r.console_log.display().to_string());
        let _ = writeln!(
            md,
            "| {image} | boot | {} | {:.1}s | {log} |",
            r.boot.result.as_str(),
            r.boot.seconds
        );
        for c in &r.checks {
            let _ = writeln!(
                md,
                "| {image} | {} | {} | {:.1}s | {log} |",
                cell(&c.name),
                c.result.as_str(),
                c.seconds
            );
        }
    }
    let failures: Vec<_> = reports
        .iter()
        .flat_map(|r| {
            let boot = (r.boot.result != Outcome::Pass).then(|| {
                (
                    r,
                    "boot".to_string(),
                    r.boot.reason.clone().unwrap_or_default(),
                    String::new(),
                )
            });
            boot.into_iter().chain(
                r.checks
                    .iter()
                    .filter(|c| matches!(c.result, Outcome::Fail | Outcome::Timeout))
                    .map(move |c| {
                        (
                            r,
                            c.name.clone(),
                            c.reason.clone().unwrap_or_default(),
                            c.output.clone(),
                        )
                    }),
            )
        })
        .collect();
    if !failures.is_empty() {
        md.push_str("\n## Failures\n");
        for (r, name, reason, output) in failures {
            let _ = write!(md, "\n### {} / {}\n\n{}\n", r.image.display(), name, reason);
            if !output.is_empty() {
                let _ = write!(md, "\n```\n{}\n```\n", output.trim_end());
            }
        }
    }
    md
}

/// Writes `report.json` (an array of runs) and `report.md` into `dir`.
pub fn write(dir: &Path, reports: &[Report]) -> std::io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let json = dir.join("report.json");
    let md = dir.join("report.md");
    let text = serde_json::to_string_pretty(reports).map_err(std::io::Error::other)?;
    std::fs::write(&json, text + "\n")?;
    std::fs::write(&md, markdown(reports))?;
    Ok((json, md))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let mut r = Report {
            image: "out/a.raw".into(),
            instance_id: "iid-1".into(),
            boot: BootResult {
                result: Outcome::Pass,
                seconds: 12.25,
                reason: None,
            },
            checks: vec![
                CheckResult {
                    name: "ok".into(),
                    command: "true".into(),
                    result: Outcome::Pass,
                    status: Some(0),
                    seconds: 0.5,
                    output: String::new(),
                    reason: None,
                },
                CheckResult {
                    name: "bad".into(),
                    command: "echo a|b; false".into(),
                    result: Outcome::Fail,
                    status: Some(1),
                    seconds: 0.25,
                    output: "a|b\n".into(),
                    reason: Some("exit status 1, expected 0".into()),
                },
            ],
            console_log: "r/console.log".into(),
            interrupted: false,
            passed: false,
        };
        r.passed = r.compute_passed();
        r
    }

    #[test]
    fn markdown_table_and_failures() {
        let md = markdown(&[report()]);
        assert_eq!(
            md,
            "# Boot test report\n\n0 of 1 image(s) passed.\n\n\
             | image | check | result | time | console log |\n|---|---|---|---|---|\n\
             | out/a.raw | boot | pass | 12.2s | r/console.log |\n\
             | out/a.raw | ok | pass | 0.5s | r/console.log |\n\
             | out/a.raw | bad | fail | 0.2s | r/console.log |\n\
             \n## Failures\n\n### out/a.raw / bad\n\nexit status 1, expected 0\n\n```\na|b\n```\n"
        );
    }

    #[test]
    fn json_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let (json, md) = write(dir.path(), &[report()]).unwrap();
        let back: Vec<Report> =
            serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
        assert_eq!(back, vec![report()]);
        assert!(std::fs::read_to_string(md)
            .unwrap()
            .contains("| bad | fail |"));
    }
}
