//! The daemon side of the plugin protocol: find plugin programs, call them through the
//! runner with a timeout, and turn every way a plugin can misbehave (crash, hang,
//! garbage, protocol error) into a [`PluginError`] that names it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use runner::{Cmd, RunError, Runner};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::protocol::{
    ApplyParams, ApplyResult, Change, Describe, Envelope, PlanParams, PlanResult, Request,
    Response, VERSION,
};

pub const PREFIX: &str = "sysconfig-plugin-";

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin {plugin}: {source}")]
    Run {
        plugin: String,
        #[source]
        source: RunError,
    },
    #[error("plugin {plugin} exited with {status}{}", stderr_suffix(.stderr))]
    Exit {
        plugin: String,
        status: String,
        stderr: String,
    },
    #[error("plugin {plugin} answered garbage: {detail}")]
    Garbage { plugin: String, detail: String },
    #[error("plugin {plugin} reported an error: {message}")]
    Reported { plugin: String, message: String },
}

fn stderr_suffix(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("cannot list plugin directory {dir}: {source}")]
    List {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("key `{key}` is claimed by both plugin {first} and plugin {second}")]
    Conflict {
        key: String,
        first: String,
        second: String,
    },
}

/// One plugin program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plugin {
    /// The file name without the `sysconfig-plugin-` prefix.
    pub name: String,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub describe: Duration,
    pub plan: Duration,
    pub apply: Duration,
}

/// Executable files named `sysconfig-plugin-*` in `dir`, sorted by name. Names with a dot
/// are skipped: a cargo target directory holds `sysconfig-plugin-x.d` beside each program.
pub fn discover(dir: &Path) -> Result<Vec<Plugin>, DiscoverError> {
    use std::os::unix::fs::PermissionsExt;
    let rd = std::fs::read_dir(dir).map_err(|source| DiscoverError::List {
        dir: dir.display().to_string(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in rd.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file_name.strip_prefix(PREFIX) else {
            continue;
        };
        if name.is_empty() || name.contains('.') {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            out.push(Plugin {
                name: name.to_string(),
                path,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Calls plugins through a runner.
pub struct Host<'r> {
    runner: &'r dyn Runner,
    timeouts: Timeouts,
}

impl<'r> Host<'r> {
    pub fn new(runner: &'r dyn Runner, timeouts: Timeouts) -> Self {
        Host { runner, timeouts }
    }

    fn call<T: DeserializeOwned>(
        &self,
        plugin: &Plugin,
        request: Request,
        timeout: Duration,
    ) -> Result<T, PluginError> {
        let cmd = Cmd::new(&plugin.path)
            .stdin(Envelope::new(request).to_line())
            .timeout(timeout)
            .tag(format!("plugin {}", plugin.name));
        let out = self
            .runner
            .output(&cmd)
            .map_err(|source| PluginError::Run {
                plugin: plugin.name.clone(),
                source,
            })?;
        if !out.success() {
            return Err(PluginError::Exit {
                plugin: plugin.name.clone(),
                status: out.status_text(),
                stderr: out.stderr_tail(4),
            });
        }
        let garbage = |detail: String| PluginError::Garbage {
            plugin: plugin.name.clone(),
            detail,
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .ok_or_else(|| garbage("no response line on standard output".into()))?;
        let response: Response = serde_json::from_str(line)
            .map_err(|e| garbage(format!("{e} in {:?}", truncate(line, 120))))?;
        if response.protocol != VERSION {
            return Err(garbage(format!(
                "protocol version {} (expected {VERSION})",
                response.protocol
            )));
        }
        match (response.result, response.error) {
            (_, Some(message)) => Err(PluginError::Reported {
                plugin: plugin.name.clone(),
                message,
            }),
            (Some(v), None) => serde_json::from_value(v).map_err(|e| garbage(e.to_string())),
            (None, None) => Err(garbage("response has neither result nor error".into())),
        }
    }

    pub fn describe(&self, plugin: &Plugin) -> Result<Describe, PluginError> {
        self.call(plugin, Request::Describe, self.timeouts.describe)
    }

    pub fn plan(
        &self,
        plugin: &Plugin,
        root: &Path,
        desired: Map<String, Value>,
    ) -> Result<Vec<Change>, PluginError> {
        let params = PlanParams {
            root: root.to_path_buf(),
            desired,
        };
        let r: PlanResult = self.call(plugin, Request::Plan(params), self.timeouts.plan)?;
        Ok(r.changes)
    }

    pub fn apply(
        &self,
        plugin: &Plugin,
        root: &Path,
        dry_run: bool,
        desired: Map<String, Value>,
        changes: Vec<Change>,
    ) -> Result<ApplyResult, PluginError> {
        let timeout = apply_timeout(self.timeouts.apply, &changes);
        let params = ApplyParams {
            root: root.to_path_buf(),
            dry_run,
            desired,
            changes,
        };
        self.call(plugin, Request::Apply(params), timeout)
    }
}

/// The timeout of one apply call: the configured one, plus what its changes say their
/// longest commands may take (a zone install gets its hour on top).
pub fn apply_timeout(base: Duration, changes: &[Change]) -> Duration {
    let extra: u64 = changes
        .iter()
        .filter_map(|c| c.timeout_secs)
        .fold(0, u64::saturating_add);
    base.saturating_add(Duration::from_secs(extra))
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The plugins that described themselves, with the keys each owns.
#[derive(Debug, Default)]
pub struct Registry {
    pub plugins: Vec<(Plugin, Describe)>,
    /// Plugins that could not describe themselves; they take no part in this run.
    pub broken: Vec<PluginError>,
}

impl Registry {
    /// Describes every plugin; two plugins owning one key is an error.
    pub fn load(host: &Host, plugins: Vec<Plugin>) -> Result<Registry, DiscoverError> {
        let mut reg = Registry::default();
        let mut owners: BTreeMap<String, String> = BTreeMap::new();
        for p in plugins {
            match host.describe(&p) {
                Ok(d) => {
                    for key in &d.keys {
                        if let Some(first) = owners.insert(key.clone(), p.name.clone()) {
                            return Err(DiscoverError::Conflict {
                                key: key.clone(),
                                first,
                                second: p.name.clone(),
                            });
                        }
                    }
                    reg.plugins.push((p, d));
                }
                Err(e) => reg.broken.push(e),
            }
        }
        Ok(reg)
    }

    pub fn owner_of(&self, key: &str) -> Option<&str> {
        self.plugins
            .iter()
            .find(|(_, d)| d.keys.iter().any(|k| k == key))
            .map(|(p, _)| p.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runner::{Output, Recorder};

    fn host_timeouts() -> Timeouts {
        Timeouts {
            describe: Duration::from_secs(10),
            plan: Duration::from_secs(60),
            apply: Duration::from_secs(600),
        }
    }

    #[test]
    fn an_apply_call_gets_the_time_its_longest_commands_need() {
        let rec = Recorder::new();
        rec.on(
            "/usr/lib/sysconfig/plugins/sysconfig-plugin-zones",
            Output::ok("{\"protocol\":1,\"result\":{\"results\":[]}}\n"),
        );
        let host = Host::new(&rec, host_timeouts());
        let plugin = Plugin {
            name: "zones".into(),
            path: "/usr/lib/sysconfig/plugins/sysconfig-plugin-zones".into(),
        };
        use crate::plugins::{zones, Planned};
        let zone = || "web".to_string();
        let install = Planned::new(
            "zones",
            "web/install",
            "install zone web",
            zones::Change::Install { zone: zone() },
        )
        .timeout(zones::INSTALL_TIMEOUT)
        .to_protocol()
        .unwrap();
        let boot = Planned::new(
            "zones",
            "web/boot",
            "boot zone web",
            zones::Change::Boot { zone: zone() },
        )
        .to_protocol()
        .unwrap();
        host.apply(
            &plugin,
            Path::new("/"),
            false,
            Map::new(),
            vec![install.clone(), boot],
        )
        .unwrap();
        // A zone install (an hour) on top of the usual 600 s.
        assert_eq!(
            rec.calls()[0].get_timeout(),
            Some(Duration::from_secs(4200))
        );
        assert_eq!(
            apply_timeout(Duration::from_secs(600), &[install.clone(), install]),
            Duration::from_secs(7800)
        );
    }

    #[test]
    fn the_smf_start_method_leaves_the_bounds_to_sysconfig() {
        // sysconfig bounds every step itself (sources, each plugin call, each command);
        // the whole run grows with the zones it installs, so its start method has no SMF
        // timeout, as svc:/system/zones' start method (timeout_seconds='0': "A '0' or
        // '-1' denotes an infinite timeout", service_bundle.dtd.1).
        for m in ["sysconfig.xml", "sysconfig-dev.xml"] {
            let path = format!("{}/../templates/files/smf/{m}", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).unwrap();
            let start = text
                .split("<exec_method")
                .find(|e| e.contains("name='start'"))
                .unwrap_or_else(|| panic!("{m}: no start method"));
            assert!(start.contains("timeout_seconds='0'"), "{m}: {start}");
        }
    }
}
