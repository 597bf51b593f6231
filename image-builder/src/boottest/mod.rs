//! Boot tests: boot a built image in a VM with a NoCloud seed, run a checklist of shell
//! commands on its serial console, and report the results as JSON and Markdown.

pub mod checklist;
pub mod report;
pub mod seed;
pub mod session;

pub use checklist::{Check, Checklist, Expect};
pub use report::{BootResult, CheckResult, Outcome, Report};
pub use session::{
    boot_and_check, local_report, log_in, run_checks, run_checks_local, Login, TestRun,
};
