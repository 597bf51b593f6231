//! One pass of sysconfig: gather the sources, store the desired state, let every plugin
//! plan and apply its keys, store what was applied. Used by `sysconfig` (the SMF start
//! method), `sysconfig plan` and `sysconfig apply`.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use runner::Runner;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::pluginhost::{self, DiscoverError, Host, Registry, Timeouts};
use crate::protocol::{Change, Status};
use crate::rootfs::Root;
use crate::sources::{self, SourceError};
use crate::state::{AppliedRecord, DesiredRecord, ResultRecord, StateError, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The SMF start method: apply once per instance id (see `state.once_per_instance`).
    Run,
    /// Show the changes, touch nothing.
    Plan,
    /// Apply now, whatever the instance id.
    Apply,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub root: PathBuf,
    pub dry_run: bool,
    pub mode: Mode,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Plugins(#[from] DiscoverError),
    #[error("cannot write the report: {0}")]
    Output(#[from] std::io::Error),
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct Report {
    pub instance_id: String,
    /// Nothing to do: this instance was configured before.
    pub already_done: bool,
    /// Plugins that failed as a whole (describe, plan or apply call).
    pub plugin_errors: Vec<String>,
    pub changes: Vec<(String, Change)>,
    pub results: Vec<ResultRecord>,
    pub unowned: Vec<String>,
    /// What the sources skipped or do not support.
    pub warnings: Vec<String>,
}

impl Report {
    /// `sysconfig plan --json`: the sources' verdict and every planned change, with the
    /// plugin that would make it; password hashes redacted.
    pub fn to_json(&self) -> Value {
        let changes: Vec<Value> = self
            .changes
            .iter()
            .map(|(plugin, c)| {
                let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut v {
                    m.insert("plugin".into(), Value::String(plugin.clone()));
                }
                redact(&mut v);
                v
            })
            .collect();
        serde_json::json!({
            "instance_id": self.instance_id,
            "already_done": self.already_done,
            "warnings": self.warnings,
            "unowned": self.unowned,
            "plugin_errors": self.plugin_errors,
            "changes": changes,
        })
    }

    pub fn ok(&self) -> bool {
        self.plugin_errors.is_empty() && self.results.iter().all(|r| r.status != "failed")
    }
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Failed => "failed",
        Status::Skipped => "skipped",
    }
}

pub fn run(
    cfg: &Config,
    opts: &Options,
    runner: &dyn Runner,
    out: &mut dyn Write,
) -> Result<Report, DaemonError> {
    let root = Root::new(&opts.root);
    let store = Store::new(root.clone(), &cfg.state.dir, cfg.state.history);
    // Sources first: malformed metadata stops here, before any state is written.
    let gathered = sources::gather(&cfg.sources, &root, runner)?;
    let mut report = Report {
        instance_id: gathered.instance_id.clone(),
        warnings: gathered.warnings.clone(),
        ..Report::default()
    };
    for w in &gathered.warnings {
        writeln!(out, "warning: {w}")?;
    }
    let previous = store.applied()?;
    if opts.mode == Mode::Run && cfg.state.once_per_instance {
        if let Some(prev) = &previous {
            if prev.ok && prev.instance_id == gathered.instance_id {
                writeln!(
                    out,
                    "instance {} is already configured; nothing to do",
                    gathered.instance_id
                )?;
                report.already_done = true;
                return Ok(report);
            }
        }
    }
    let mut desired = gathered.desired.to_map();
    desired.remove("schema_version");
    let writes = !opts.dry_run && opts.mode != Mode::Plan;
    if writes {
        store.save_desired(&DesiredRecord {
            instance_id: gathered.instance_id.clone(),
            sources: gathered.sources.clone(),
            desired: desired.clone(),
        })?;
    }

    let host = Host::new(
        runner,
        Timeouts {
            describe: Duration::from_secs(cfg.plugins.describe_timeout_secs),
            plan: Duration::from_secs(cfg.plugins.plan_timeout_secs),
            apply: Duration::from_secs(cfg.plugins.apply_timeout_secs),
        },
    );
    let found = pluginhost::discover(&cfg.plugins.path)?;
    tracing::info!(
        "plugins in {}: {}",
        cfg.plugins.path.display(),
        found
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let registry = Registry::load(&host, found)?;
    for e in &registry.broken {
        tracing::error!("{e}");
        writeln!(out, "error: {e}")?;
        report.plugin_errors.push(e.to_string());
    }
    for key in desired.keys() {
        if registry.owner_of(key).is_none() {
            tracing::warn!("no plugin owns the key `{key}`; it is not applied");
            writeln!(out, "warning: no plugin owns `{key}`")?;
            report.unowned.push(key.clone());
        }
    }

    let mut applied: Map<String, Value> = previous.map(|p| p.applied).unwrap_or_default();
    for (plugin, describe) in &registry.plugins {
        let mine: Map<String, Value> = desired
            .iter()
            .filter(|(k, _)| describe.keys.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let fail = |report: &mut Report,
                    out: &mut dyn Write,
                    e: pluginhost::PluginError|
         -> std::io::Result<()> {
            tracing::error!("{e}");
            writeln!(out, "error: {e}")?;
            report.plugin_errors.push(e.to_string());
            Ok(())
        };
        let changes = match host.plan(plugin, &opts.root, mine.clone()) {
            Ok(c) => c,
            Err(e) => {
                fail(&mut report, out, e)?;
                continue;
            }
        };
        if changes.is_empty() {
            writeln!(out, "{}: up to date", plugin.name)?;
            for k in mine.keys() {
                applied.insert(k.clone(), mine[k].clone());
            }
            continue;
        }
        for c in &changes {
            writeln!(out, "{}: {}", plugin.name, c.summary)?;
            report.changes.push((plugin.name.clone(), c.clone()));
        }
        if opts.mode == Mode::Plan {
            continue;
        }
        let result = match host.apply(
            plugin,
            &opts.root,
            opts.dry_run,
            mine.clone(),
            changes.clone(),
        ) {
            Ok(r) => r,
            Err(e) => {
                fail(&mut report, out, e)?;
                continue;
            }
        };
        let mut all_ok = true;
        for c in &changes {
            let r = result.results.iter().find(|r| r.id == c.id);
            let (status, message) = match r {
                Some(r) => (status_name(r.status), r.message.clone()),
                None => (
                    "failed",
                    Some("the plugin gave no result for this change".to_string()),
                ),
            };
            if let Some(r) = r {
                for a in &r.actions {
                    writeln!(out, "  {a}")?;
                }
            }
            let line = format!(
                "{}: {} {status}{}",
                plugin.name,
                c.id,
                message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
            if status == "failed" {
                all_ok = false;
                tracing::error!("{line}");
            } else {
                tracing::info!("{line}");
            }
            writeln!(out, "{line}")?;
            report.results.push(ResultRecord {
                plugin: plugin.name.clone(),
                id: c.id.clone(),
                status: status.to_string(),
                message,
            });
        }
        if all_ok {
            for (k, v) in mine {
                applied.insert(k, v);
            }
        }
    }

    if writes {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        store.save_applied(&AppliedRecord {
            instance_id: gathered.instance_id,
            time,
            ok: report.ok(),
            applied,
            results: report.results.clone(),
        })?;
    }
    Ok(report)
}

/// Replaces every `password_hash` value with a marker, for display.
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "password_hash" {
                    *x = Value::String("<redacted>".into());
                } else {
                    redact(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// How a key's desired value stands against the applied one, for `show`.
fn key_states<'a>(
    d: &'a Map<String, Value>,
    a: &'a Map<String, Value>,
) -> Vec<(&'a String, &'static str, Value)> {
    let mut keys: Vec<&String> = d.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let state = match (d.get(k), a.get(k)) {
                (Some(x), Some(y)) if x == y => "applied",
                (Some(_), Some(_)) => "differs",
                (Some(_), None) => "not applied",
                (None, Some(_)) => "no longer desired",
                (None, None) => return None,
            };
            let mut shown = d.get(k).or(a.get(k)).cloned().unwrap_or(Value::Null);
            redact(&mut shown);
            Some((k, state, shown))
        })
        .collect()
}

/// `sysconfig show --json`: the stored desired and applied records (password hashes
/// redacted) and each key's state.
pub fn show_json(cfg: &Config, root: &std::path::Path) -> Result<Value, DaemonError> {
    let store = Store::new(Root::new(root), &cfg.state.dir, cfg.state.history);
    let desired = store.desired()?;
    let applied = store.applied()?;
    let empty = Map::new();
    let d = desired.as_ref().map(|d| &d.desired).unwrap_or(&empty);
    let a = applied.as_ref().map(|a| &a.applied).unwrap_or(&empty);
    let keys: Vec<Value> = key_states(d, a)
        .into_iter()
        .map(|(k, state, _)| serde_json::json!({"key": k, "state": state}))
        .collect();
    let mut v = serde_json::json!({
        "desired": desired,
        "applied": applied,
        "keys": keys,
    });
    redact(&mut v);
    Ok(v)
}

/// `sysconfig show`: desired next to applied, key by key.
pub fn show(cfg: &Config, root: &std::path::Path, out: &mut dyn Write) -> Result<(), DaemonError> {
    let store = Store::new(Root::new(root), &cfg.state.dir, cfg.state.history);
    let desired = store.desired()?;
    let applied = store.applied()?;
    match &desired {
        Some(d) => writeln!(
            out,
            "desired: instance {} from {}",
            d.instance_id,
            d.sources.join(", ")
        )?,
        None => writeln!(out, "desired: none stored yet")?,
    }
    match &applied {
        Some(a) => writeln!(
            out,
            "applied: instance {} at {} ({})",
            a.instance_id,
            a.time,
            if a.ok { "ok" } else { "with failures" }
        )?,
        None => writeln!(out, "applied: nothing yet")?,
    }
    let empty = Map::new();
    let d = desired.as_ref().map(|d| &d.desired).unwrap_or(&empty);
    let a = applied.as_ref().map(|a| &a.applied).unwrap_or(&empty);
    for (k, state, shown) in key_states(d, a) {
        writeln!(
            out,
            "  {k}: {state}: {}",
            serde_json::to_string(&shown).unwrap_or_default()
        )?;
    }
    if let Some(a) = &applied {
        for r in a.results.iter().filter(|r| r.status == "failed") {
            writeln!(
                out,
                "  failed: {} {}: {}",
                r.plugin,
                r.id,
                r.message.as_deref().unwrap_or("")
            )?;
        }
    }
    Ok(())
}
