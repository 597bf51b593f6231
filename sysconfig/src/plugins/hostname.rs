//! hostname: /etc/nodename (what illumos reads at boot), the loopback lines of
//! /etc/inet/hosts (/etc/hosts is a link to it), and, on the running system, `hostname`.

use runner::Cmd;
use serde::{Deserialize, Serialize};

use super::{Ctx, Outcome, Planned, Plugin, PluginError};

pub struct Hostname;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    #[serde(default)]
    pub hostname: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Change {
    /// /etc/nodename, and `hostname` on the running system.
    Nodename,
    /// The loopback lines of /etc/inet/hosts, dropping the name they had.
    Hosts { old: Option<String> },
}

pub fn valid(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 63
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !h.starts_with('-')
        && !h.ends_with('-')
}

/// The hosts file with `new` first on the 127.0.0.1 and ::1 lines (dropping `old`),
/// adding those lines when missing.
pub fn hosts_with(text: &str, old: Option<&str>, new: &str) -> String {
    let mut out = String::new();
    let mut seen = (false, false);
    for l in text.lines() {
        let fields: Vec<&str> = l.split_whitespace().collect();
        let addr = fields.first().copied().unwrap_or("");
        if !l.trim_start().starts_with('#') && (addr == "127.0.0.1" || addr == "::1") {
            if addr == "127.0.0.1" {
                seen.0 = true;
            } else {
                seen.1 = true;
            }
            let mut names = vec![new];
            names.extend(
                fields[1..]
                    .iter()
                    .copied()
                    .filter(|n| *n != new && Some(*n) != old),
            );
            out.push_str(&format!("{addr}\t{}\n", names.join(" ")));
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    if !seen.1 {
        out.push_str(&format!("::1\t{new} localhost\n"));
    }
    if !seen.0 {
        out.push_str(&format!("127.0.0.1\t{new} localhost loghost\n"));
    }
    out
}

impl Plugin for Hostname {
    const NAME: &'static str = "hostname";
    const KEYS: &'static [&'static str] = &["hostname"];

    type Input = Input;
    type Change = Change;

    fn plan(&self, ctx: &Ctx, input: &Input) -> Result<Vec<Planned<Change>>, PluginError> {
        let Some(h) = &input.hostname else {
            return Ok(vec![]);
        };
        if !valid(h) {
            return Err(PluginError::Invalid {
                what: "hostname".into(),
                value: h.clone(),
                reason: "is not a valid host name (letters, digits, '-', at most 63)".into(),
            });
        }
        let mut out = Vec::new();
        let current = ctx.read("/etc/nodename")?.map(|s| s.trim().to_string());
        if current.as_deref() != Some(h.as_str()) {
            out.push(Planned::new(
                "hostname",
                "nodename",
                format!("set /etc/nodename to {h}"),
                Change::Nodename,
            ));
        }
        let hosts = ctx.read("/etc/inet/hosts")?.unwrap_or_default();
        if hosts_with(&hosts, current.as_deref(), h) != hosts {
            out.push(Planned::new(
                "hostname",
                "hosts",
                format!("put {h} on the loopback lines of /etc/inet/hosts"),
                Change::Hosts { old: current },
            ));
        }
        Ok(out)
    }

    fn apply(&self, ctx: &Ctx, input: &Input, c: &Change) -> Result<Outcome, PluginError> {
        let h = input
            .hostname
            .as_deref()
            .ok_or_else(|| PluginError::NotDesired("hostname".into()))?;
        match c {
            Change::Nodename => {
                ctx.write("/etc/nodename", format!("{h}\n").as_bytes(), 0o644, None)?;
                if ctx.live() {
                    ctx.run(Cmd::new("/usr/bin/hostname").arg(h))?;
                }
            }
            Change::Hosts { old } => {
                let hosts = ctx.read("/etc/inet/hosts")?.unwrap_or_default();
                ctx.write(
                    "/etc/inet/hosts",
                    hosts_with(&hosts, old.as_deref(), h).as_bytes(),
                    0o644,
                    None,
                )?;
            }
        }
        Ok(Outcome::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;
    use runner::Recorder;
    use serde_json::json;

    #[test]
    fn writes_nodename_and_hosts_in_a_root_and_is_idempotent() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc/inet")).unwrap();
        std::fs::write(t.path().join("etc/nodename"), "unknown\n").unwrap();
        std::fs::write(
            t.path().join("etc/inet/hosts"),
            "# hosts\n::1 unknown localhost\n127.0.0.1 unknown localhost loghost\n",
        )
        .unwrap();
        let rec = Recorder::new();
        let d = json!({"hostname": "web1"});
        let r = testing::apply(&Hostname, t.path(), &rec, d.clone(), false).unwrap();
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(
            std::fs::read_to_string(t.path().join("etc/nodename")).unwrap(),
            "web1\n"
        );
        assert_eq!(
            std::fs::read_to_string(t.path().join("etc/inet/hosts")).unwrap(),
            "# hosts\n::1\tweb1 localhost\n127.0.0.1\tweb1 localhost loghost\n"
        );
        assert!(
            rec.lines().is_empty(),
            "no live command under an alternate root"
        );
        assert!(testing::plan(&Hostname, t.path(), &rec, d)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn bad_names_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let err = testing::plan(
            &Hostname,
            t.path(),
            &Recorder::new(),
            json!({"hostname": "a_b"}),
        )
        .unwrap_err();
        assert!(err.contains("not a valid host name"), "{err}");
    }

    #[test]
    fn live_system_also_runs_hostname() {
        let rec = Recorder::new();
        let ctx = Ctx::new(crate::rootfs::Root::new("/"), true, &rec);
        let input = testing::input(&Hostname, json!({"hostname": "vm1"}));
        Hostname.apply(&ctx, &input, &Change::Nodename).unwrap();
        assert_eq!(
            ctx.take_actions(),
            [
                "would write: /etc/nodename (0644)",
                "would run: /usr/bin/hostname vm1"
            ]
        );
    }
}
