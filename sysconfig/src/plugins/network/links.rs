//! Links: the NIC with a MAC address, link names, and the dladm commands that create
//! aggregations and VLANs.
//!
//! A NIC is the link that `dladm show-phys -m` reports for its MAC address. Its fields are
//! LINK, SLOT, ADDRESS, INUSE and CLIENT (illumos-gate usr/src/cmd/dladm/dladm.c,
//! `phys_m_fields`); ADDRESS is printed by `dladm_aggr_macaddr2str`, which calls
//! `_link_ntoa` (usr/src/lib/libsocket/inet/link_addr.c): each octet `%x`, so lower case
//! without leading zeros (`2:8:20:ab:cd:ef`). In parseable output (`-p`) with more than
//! one field, libofmt escapes the `:` inside a value with a backslash (usr/src/lib/libofmt/
//! common/ofmt.c, `ofmt_print`, `escsep`). Only the primary slot is the NIC's own address.
//! `dladm show-ether` has no MAC address field.

use std::collections::BTreeMap;

use runner::Cmd;

use super::{label, op, skip, unusable, Live, Network, Op, DLADM};
use crate::plugins::{Planned, PluginError};
use crate::schema::Interface;

/// A MAC address as six octets, from any common spelling.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut out = [0u8; 6];
    for (o, p) in out.iter_mut().zip(parts) {
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *o = u8::from_str_radix(p, 16).ok()?;
    }
    Some(out)
}

/// `dladm show-phys -m -p -o LINK,SLOT,ADDRESS` output as MAC -> link, primary slots only.
pub fn parse_phys_macs(text: &str) -> BTreeMap<[u8; 6], String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(link), Some(slot), Some(addr)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if slot != "primary" {
            continue;
        }
        if let Some(mac) = parse_mac(&addr.replace("\\:", ":")) {
            out.entry(mac).or_insert_with(|| link.to_string());
        }
    }
    out
}

/// A datalink name as dladm accepts one: a letter first, letters, digits, `_` and `.`,
/// ending in a digit, at most 31 characters (MAXLINKNAMELEN is 32 with the NUL).
pub(super) fn valid_link(name: &str) -> bool {
    name.len() <= 31
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.ends_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

impl Network {
    /// The link of a NIC: its `name`, the link with its MAC, or the link named like its
    /// `id` if the system has one. `None` (with a change saying why) when there is none.
    pub(super) fn physical(
        &self,
        i: usize,
        iface: &Interface,
        live: bool,
        sys: &Live,
        out: &mut Vec<Planned<Op>>,
    ) -> Result<Option<String>, PluginError> {
        let what = label(i, iface);
        if let Some(n) = &iface.name {
            return Ok(Some(n.clone()));
        }
        if let Some(m) = &iface.mac {
            let Some(mac) = parse_mac(m) else {
                out.push(unusable(
                    format!("match-{i}"),
                    format!("interface {what}: {m:?} is not a MAC address"),
                ));
                return Ok(None);
            };
            if let Some(l) = sys.macs.get(&mac) {
                return Ok(Some(l.clone()));
            }
            out.push(op(
                "network",
                format!("match-{i}"),
                format!("find the NIC with MAC {m} ({what})"),
                if live {
                    Op::Error {
                        message: format!("interface {what}: no NIC has MAC address {m}"),
                    }
                } else {
                    Op::Skip {
                        why: format!(
                            "interface {what}: NICs are matched by MAC on the running system only"
                        ),
                    }
                },
            ));
            return Ok(None);
        }
        match &iface.id {
            Some(id) if live && sys.links.contains(id) => Ok(Some(id.clone())),
            Some(id) => {
                out.push(skip(
                    format!("match-{i}"),
                    if live {
                        format!("interface {id} has no MAC address and the system has no link named {id}; skipped (illumos finds NICs by MAC address)")
                    } else {
                        format!("interface {id} has no MAC address; links are looked up on the running system only; skipped")
                    },
                ));
                Ok(None)
            }
            None => Err(PluginError::Failed(format!(
                "network.interfaces[{i}] needs `name`, `mac` or `id`"
            ))),
        }
    }
}

/// dladm(8) create-aggr: `create-aggr [-t] [-P policy] [-L mode] [-T time] [-u address]
/// -l link [-l link...] aggr-link` (usage text in illumos-gate usr/src/cmd/dladm/dladm.c).
pub fn create_aggr(
    link: &str,
    members: &[String],
    lacp: Option<&str>,
    timer: Option<&str>,
    policy: Option<&str>,
) -> Cmd {
    let mut c = Cmd::new(DLADM).arg("create-aggr");
    if let Some(p) = policy {
        c = c.args(["-P", p]);
    }
    if let Some(l) = lacp {
        c = c.args(["-L", l]);
    }
    if let Some(t) = timer {
        c = c.args(["-T", t]);
    }
    for m in members {
        c = c.arg("-l").arg(m);
    }
    c.arg(link)
}

/// dladm(8) create-vlan: `create-vlan [-ft] -l link -v vid [vlan-link]`.
pub fn create_vlan(link: &str, over: &str, vid: u16) -> Cmd {
    Cmd::new(DLADM)
        .args(["create-vlan", "-l", over, "-v"])
        .arg(vid.to_string())
        .arg(link)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{live_ctx, live_state, run_all, PHYS};
    use super::*;
    use crate::plugins::{testing, Plugin};
    use runner::{Output, Recorder};
    use serde_json::json;

    #[test]
    fn macs_from_parseable_show_phys_primary_slots_only() {
        let m = parse_phys_macs(PHYS);
        assert_eq!(m[&parse_mac("52:54:00:00:00:01").unwrap()], "vioif0");
        assert_eq!(m[&parse_mac("52-54-00-00-00-02").unwrap()], "vioif1");
        assert!(!m.contains_key(&parse_mac("02:08:20:00:00:09").unwrap()));
        assert!(parse_mac("52:54:00:12:34").is_none());
    }

    #[test]
    fn a_linux_name_without_mac_is_skipped_with_a_warning_never_plumbed() {
        let rec = Recorder::new();
        live_state(&rec, "vioif0\n", "lo0\n", "lo0/v4\nlo0/v6\n");
        let ctx = live_ctx(&rec);
        let d = json!({"network": {"interfaces": [
            {"id": "eth0", "addresses": [{"kind": "dhcp"}]},
            {"id": "vioif0", "addresses": [{"kind": "dhcp"}]}
        ]}});
        let changes = run_all(&ctx, &d);
        assert_eq!(changes[0].id, "match-0");
        assert_eq!(
            changes[0].summary,
            "warning: interface eth0 has no MAC address and the system has no link named eth0; skipped (illumos finds NICs by MAC address)"
        );
        assert_eq!(
            ctx.take_actions(),
            [
                "would run: /usr/sbin/ipadm create-if vioif0",
                "would run: /usr/sbin/ipadm create-addr -T dhcp vioif0/dhcp",
            ]
        );
        assert!(!rec.lines().iter().any(|l| l.contains("eth0")));
    }

    #[test]
    fn unknown_mac_fails_that_change_only() {
        let rec = Recorder::new();
        rec.on(
            "/usr/sbin/dladm show-phys",
            Output::ok("vioif0:primary:52\\:54\\:0\\:0\\:0\\:1\n"),
        );
        live_state(&rec, "vioif0\n", "lo0\n", "lo0/v4\nlo0/v6\n");
        let ctx = live_ctx(&rec);
        let d = json!({"network": {"interfaces": [{"id": "eth0", "mac": "52:54:00:00:00:09", "addresses": [{"kind": "dhcp"}]}, {"name": "vioif0", "addresses": [{"kind": "dhcp"}]}]}});
        let d = testing::input(&Network, d);
        let changes = Network.plan(&ctx, &d).unwrap();
        let err = Network
            .apply(&ctx, &d, &changes[0].change)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "interface eth0: no NIC has MAC address 52:54:00:00:00:09"
        );
        assert_eq!(changes[1].id, "vioif0/if");
    }
}
