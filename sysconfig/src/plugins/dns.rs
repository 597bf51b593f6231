//! dns: /etc/resolv.conf, /etc/nsswitch.dns copied over /etc/nsswitch.conf (the illumos
//! way to turn on DNS host lookups), and on the running system the DNS client service.

use runner::Cmd;
use serde::{Deserialize, Serialize};

use super::{Ctx, Outcome, Planned, Plugin, PluginError};
use crate::schema::Dns as Spec;

pub struct Dns;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    #[serde(default)]
    pub dns: Option<Spec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Change {
    /// /etc/resolv.conf, and the DNS client service on the running system.
    ResolvConf,
    /// /etc/nsswitch.dns copied over /etc/nsswitch.conf.
    Nsswitch,
}

/// The resolver reads at most three nameservers (MAXNS); more are dropped with a warning.
pub const MAXNS: usize = 3;

pub fn resolv_conf(d: &Spec) -> String {
    let mut s = String::new();
    if let Some(dom) = &d.domain {
        s.push_str(&format!("domain {dom}\n"));
    }
    if !d.search.is_empty() {
        s.push_str(&format!("search {}\n", d.search.join(" ")));
    }
    for ns in d.nameservers.iter().take(MAXNS) {
        s.push_str(&format!("nameserver {ns}\n"));
    }
    s
}

impl Plugin for Dns {
    const NAME: &'static str = "dns";
    const KEYS: &'static [&'static str] = &["dns"];

    type Input = Input;
    type Change = Change;

    fn plan(&self, ctx: &Ctx, input: &Input) -> Result<Vec<Planned<Change>>, PluginError> {
        let Some(d) = &input.dns else {
            return Ok(vec![]);
        };
        for ns in &d.nameservers {
            ns.parse::<std::net::IpAddr>()
                .map_err(|_| PluginError::Invalid {
                    what: "nameserver".into(),
                    value: ns.clone(),
                    reason: "is not an IP address".into(),
                })?;
        }
        if d.nameservers.len() > MAXNS {
            eprintln!("dns: only the first {MAXNS} nameservers are used by the resolver");
        }
        let mut out = Vec::new();
        if ctx.read("/etc/resolv.conf")?.as_deref() != Some(resolv_conf(d).as_str()) {
            out.push(Planned::new(
                "dns",
                "resolv.conf",
                format!("write /etc/resolv.conf ({})", d.nameservers.join(", ")),
                Change::ResolvConf,
            ));
        }
        if !d.nameservers.is_empty() {
            let want = ctx.read("/etc/nsswitch.dns")?;
            match want {
                Some(w) if ctx.read("/etc/nsswitch.conf")?.as_deref() != Some(w.as_str()) => {
                    out.push(Planned::new(
                        "dns",
                        "nsswitch",
                        "copy /etc/nsswitch.dns over /etc/nsswitch.conf",
                        Change::Nsswitch,
                    ));
                }
                Some(_) => {}
                None => eprintln!("dns: /etc/nsswitch.dns is missing; nsswitch.conf left alone"),
            }
        }
        Ok(out)
    }

    fn apply(&self, ctx: &Ctx, input: &Input, c: &Change) -> Result<Outcome, PluginError> {
        let d = input
            .dns
            .as_ref()
            .ok_or_else(|| PluginError::NotDesired("dns".into()))?;
        match c {
            Change::ResolvConf => {
                ctx.write("/etc/resolv.conf", resolv_conf(d).as_bytes(), 0o644, None)?;
                if ctx.live() {
                    ctx.run(
                        Cmd::new("/usr/sbin/svcadm")
                            .args(["enable", "svc:/network/dns/client:default"]),
                    )?;
                }
            }
            Change::Nsswitch => {
                let text =
                    ctx.read("/etc/nsswitch.dns")?
                        .ok_or_else(|| PluginError::MissingFile {
                            path: "/etc/nsswitch.dns".into(),
                        })?;
                ctx.write("/etc/nsswitch.conf", text.as_bytes(), 0o644, None)?;
                if ctx.live() {
                    ctx.run(
                        Cmd::new("/usr/sbin/svcadm")
                            .args(["refresh", "svc:/system/name-service/switch:default"]),
                    )?;
                }
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
    fn resolv_conf_and_nsswitch_in_a_root() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/nsswitch.dns"), "hosts: files dns\n").unwrap();
        std::fs::write(t.path().join("etc/nsswitch.conf"), "hosts: files\n").unwrap();
        let d = json!({"dns": {"nameservers": ["10.0.0.1", "10.0.0.2"], "search": ["a.example", "b.example"], "domain": "a.example"}});
        let rec = Recorder::new();
        let r = testing::apply(&Dns, t.path(), &rec, d.clone(), false).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            std::fs::read_to_string(t.path().join("etc/resolv.conf")).unwrap(),
            "domain a.example\nsearch a.example b.example\nnameserver 10.0.0.1\nnameserver 10.0.0.2\n"
        );
        assert_eq!(
            std::fs::read_to_string(t.path().join("etc/nsswitch.conf")).unwrap(),
            "hosts: files dns\n"
        );
        assert!(testing::plan(&Dns, t.path(), &rec, d).unwrap().is_empty());
    }

    #[test]
    fn live_commands_are_exact() {
        let rec = Recorder::new();
        let ctx = Ctx::new(crate::rootfs::Root::new("/"), true, &rec);
        let d = json!({"dns": {"nameservers": ["1.1.1.1"]}});
        Dns.apply(&ctx, &testing::input(&Dns, d), &Change::ResolvConf)
            .unwrap();
        assert_eq!(
            ctx.take_actions(),
            [
                "would write: /etc/resolv.conf (0644)",
                "would run: /usr/sbin/svcadm enable svc:/network/dns/client:default"
            ]
        );
    }

    #[test]
    fn a_nameserver_must_be_an_address() {
        let t = tempfile::tempdir().unwrap();
        let err = testing::plan(
            &Dns,
            t.path(),
            &Recorder::new(),
            json!({"dns": {"nameservers": ["dns.google"]}}),
        )
        .unwrap_err();
        assert!(err.contains("not an IP address"));
    }
}
