//! The sysconfig plugin protocol, version 1.
//!
//! A plugin is a program. The daemon starts it once per call, writes one JSON request on
//! a single line to its standard input and closes it; the plugin answers with one JSON
//! response on a single line on standard output and exits 0. Anything a plugin wants to
//! log goes to standard error. Three methods:
//!
//! - `describe` -> [`Describe`]: the plugin's name, version and the top-level keys of the
//!   desired configuration it owns;
//! - `plan` ([`PlanParams`]) -> [`PlanResult`]: the changes needed to reach the desired
//!   state of its keys from what is on the system now;
//! - `apply` ([`ApplyParams`]) -> [`ApplyResult`]: one [`ChangeResult`] per change.
//!
//! Every request and response carries `"protocol": 1`; a plugin that sees another number
//! answers with an error instead of guessing. Secrets (password hashes) travel only in
//! the desired state on standard input, never in changes or results, because those are
//! logged and printed.

mod serve;

pub use serve::{serve, Handler};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::PathBuf;

/// The protocol version this crate speaks.
pub const VERSION: u32 = 1;

/// One request line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub protocol: u32,
    #[serde(flatten)]
    pub request: Request,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
pub enum Request {
    Describe,
    Plan(PlanParams),
    Apply(ApplyParams),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanParams {
    /// The root to configure: `/` for the running system, or an alternate root.
    pub root: PathBuf,
    /// The desired values of the keys this plugin owns (absent keys are left alone).
    pub desired: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyParams {
    pub root: PathBuf,
    /// Report every command and file write without doing it.
    pub dry_run: bool,
    pub desired: Map<String, Value>,
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Describe {
    pub name: String,
    pub version: String,
    pub keys: Vec<String>,
}

/// One planned change. `data` is the plugin's own description of what to do (for the
/// shipped plugins, their `Plugin::Change` as JSON); the daemon hands it back unchanged in
/// `apply`. It must not contain secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    pub id: String,
    pub key: String,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
    /// The longest this change may take to apply, in seconds, when that is longer than
    /// usual (a `zoneadm install`). The daemon gives an apply call
    /// `plugins.apply_timeout_secs` plus the sum of these over its changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanResult {
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Failed,
    /// Not applicable here (for example a live-system command under an alternate root).
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeResult {
    pub id: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Commands run and files written (or, in a dry run, those that would be).
    #[serde(default)]
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyResult {
    pub results: Vec<ChangeResult>,
}

/// One response line: exactly one of `result` and `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    pub protocol: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Envelope {
    pub fn new(request: Request) -> Self {
        Envelope {
            protocol: VERSION,
            request,
        }
    }

    /// The request as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format_is_method_and_params() {
        let line = Envelope::new(Request::Describe).to_line();
        assert_eq!(line, "{\"protocol\":1,\"method\":\"describe\"}\n");
        let plan = Envelope::new(Request::Plan(PlanParams {
            root: "/a".into(),
            desired: Map::new(),
        }));
        let v: Value = serde_json::from_str(&plan.to_line()).unwrap();
        assert_eq!(v["method"], "plan");
        assert_eq!(v["params"]["root"], "/a");
        let back: Envelope = serde_json::from_value(v).unwrap();
        assert_eq!(back, plan);
    }

    #[test]
    fn unknown_fields_in_results_are_rejected() {
        let bad = r#"{"changes":[{"id":"a","key":"k","summary":"s","extra":1}]}"#;
        let err = serde_json::from_str::<PlanResult>(bad).unwrap_err();
        assert!(err.to_string().contains("extra"), "{err}");
    }
}
