//! network: NICs found by name or by MAC address, IP interfaces and addresses with
//! `ipadm` (idempotent by address object name), and the default route in
//! /etc/defaultrouter plus a persistent `route -p add`.
//!
//! `dladm show-ether` has no MAC address field (its fields are LINK, PTYPE, STATE, AUTO,
//! SPEED-DUPLEX, PAUSE, REM_FAULT); MAC addresses come from `dladm show-phys -m`, whose
//! parseable output escapes the colons of the address (`net0:2\:8\:20\:ab\:cd\:ef`) and
//! drops leading zeros of each octet.

use std::collections::{BTreeMap, BTreeSet};

use runner::Cmd;
use serde_json::{json, Map, Value};

use super::{change, typed, Ctx, Outcome, Plugin};
use crate::protocol::Change;
use crate::schema::{AddressKind, Network as Spec};

pub struct Network;

const DLADM: &str = "/usr/sbin/dladm";
const IPADM: &str = "/usr/sbin/ipadm";
const ROUTE: &str = "/usr/sbin/route";

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

/// `dladm show-phys -m -p -o LINK,ADDRESS` output as MAC -> link.
pub fn parse_phys_macs(text: &str) -> BTreeMap<[u8; 6], String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((link, addr)) = line.split_once(':') else {
            continue;
        };
        if let Some(mac) = parse_mac(&addr.replace("\\:", ":")) {
            out.entry(mac).or_insert_with(|| link.to_string());
        }
    }
    out
}

fn obj_name(kind: AddressKind, n_static: usize, v6: bool) -> String {
    match kind {
        AddressKind::Dhcp => "dhcp".into(),
        AddressKind::Addrconf => "v6".into(),
        AddressKind::Static if v6 => format!("v6s{n_static}"),
        AddressKind::Static if n_static == 0 => "v4".into(),
        AddressKind::Static => format!("v4s{n_static}"),
    }
}

fn valid_obj(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
}

impl Plugin for Network {
    const NAME: &'static str = "network";
    const KEYS: &'static [&'static str] = &["network"];

    fn plan(&self, ctx: &Ctx, desired: &Map<String, Value>) -> Result<Vec<Change>, String> {
        let Some(spec) = typed::<Spec>(desired, "network")? else {
            return Ok(vec![]);
        };
        let live = ctx.live();
        let needs_macs = spec.interfaces.iter().any(|i| i.name.is_none());
        let macs = if needs_macs && live {
            ctx.query(Cmd::new(DLADM).args(["show-phys", "-m", "-p", "-o", "LINK,ADDRESS"]))?
                .map(|t| parse_phys_macs(&t))
        } else {
            None
        };
        let (ifs, objs): (BTreeSet<String>, BTreeSet<String>) = if live {
            let ifs = ctx
                .query(Cmd::new(IPADM).args(["show-if", "-p", "-o", "IFNAME"]))?
                .unwrap_or_default();
            let objs = ctx
                .query(Cmd::new(IPADM).args(["show-addr", "-p", "-o", "ADDROBJ"]))?
                .unwrap_or_default();
            (
                ifs.lines().map(String::from).collect(),
                objs.lines().map(String::from).collect(),
            )
        } else {
            Default::default()
        };
        let mut out = Vec::new();
        for (i, iface) in spec.interfaces.iter().enumerate() {
            let link = match (&iface.name, &iface.mac) {
                (Some(n), _) => n.clone(),
                (None, Some(m)) => {
                    let mac = parse_mac(m)
                        .ok_or(format!("interfaces[{i}]: {m:?} is not a MAC address"))?;
                    match macs.as_ref().and_then(|t| t.get(&mac)) {
                        Some(l) => l.clone(),
                        None => {
                            out.push(change("network", format!("match-{i}"), format!("find the NIC with MAC {m}"), if live {
                                json!({"error": format!("no NIC has MAC address {m}")})
                            } else {
                                json!({"skip": "NICs are matched by MAC on the running system only"})
                            }));
                            continue;
                        }
                    }
                }
                (None, None) => return Err(format!("interfaces[{i}] needs `name` or `mac`")),
            };
            if !ifs.contains(&link) {
                out.push(change(
                    "network",
                    format!("{link}/if"),
                    format!("create IP interface {link}"),
                    json!({"link": link}),
                ));
            }
            let mut n_static = 0;
            for a in &iface.addresses {
                let v6 = a.address.as_deref().is_some_and(|x| x.contains(':'));
                let name = match &a.name {
                    Some(n) => n.clone(),
                    None => obj_name(a.kind, n_static, v6),
                };
                if a.kind == AddressKind::Static {
                    n_static += 1;
                    let addr = a
                        .address
                        .as_deref()
                        .ok_or(format!("{link}: a static address needs `address`"))?;
                    let (ip, prefix) = addr
                        .split_once('/')
                        .ok_or(format!("{link}: address {addr} needs /PREFIX"))?;
                    ip.parse::<std::net::IpAddr>()
                        .map_err(|_| format!("{link}: {ip} is not an IP address"))?;
                    prefix
                        .parse::<u8>()
                        .map_err(|_| format!("{link}: bad prefix in {addr}"))?;
                }
                if !valid_obj(&name) {
                    return Err(format!("{link}: address object name {name:?} must start with a letter and be at most 32 letters and digits"));
                }
                let obj = format!("{link}/{name}");
                if !objs.contains(&obj) {
                    let what = match a.kind {
                        AddressKind::Dhcp => "DHCP".to_string(),
                        AddressKind::Addrconf => "IPv6 autoconf".to_string(),
                        AddressKind::Static => a.address.clone().unwrap_or_default(),
                    };
                    out.push(change(
                        "network",
                        obj.clone(),
                        format!("add {what} address {obj}"),
                        json!({"obj": obj, "kind": a.kind, "address": a.address}),
                    ));
                }
            }
        }
        if let Some(gw) = &spec.default_route {
            gw.parse::<std::net::Ipv4Addr>()
                .map_err(|_| format!("default_route {gw:?} is not an IPv4 address"))?;
            if ctx
                .read("/etc/defaultrouter")?
                .map(|s| s.trim().to_string())
                .as_deref()
                != Some(gw.as_str())
            {
                out.push(change(
                    "network",
                    "default-route",
                    format!("default route via {gw}"),
                    json!({"gateway": gw}),
                ));
            }
        }
        Ok(out)
    }

    fn apply(
        &self,
        ctx: &Ctx,
        _desired: &Map<String, Value>,
        c: &Change,
    ) -> Result<Outcome, String> {
        if let Some(why) = c.data.get("skip").and_then(Value::as_str) {
            return Ok(Outcome::Skipped(why.to_string()));
        }
        if let Some(e) = c.data.get("error").and_then(Value::as_str) {
            return Err(e.to_string());
        }
        let s = |k: &str| {
            c.data
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        if c.id == "default-route" {
            let gw = s("gateway");
            ctx.write(
                "/etc/defaultrouter",
                format!("{gw}\n").as_bytes(),
                0o644,
                None,
            )?;
            if ctx.live() {
                ctx.run(route_add(&gw)).or_else(|e| {
                    // A route that is already there is what we want.
                    if e.contains("entry exists") {
                        Ok(runner::Output::ok(""))
                    } else {
                        Err(e)
                    }
                })?;
            }
            return Ok(Outcome::Done);
        }
        if !ctx.live() {
            return Ok(Outcome::Skipped(
                "ipadm configures the running system; not run under an alternate root".into(),
            ));
        }
        if c.id.ends_with("/if") {
            ctx.run(create_if(&s("link")))?;
            return Ok(Outcome::Done);
        }
        let kind: AddressKind =
            serde_json::from_value(c.data["kind"].clone()).map_err(|e| e.to_string())?;
        ctx.run(create_addr(
            kind,
            c.data.get("address").and_then(Value::as_str),
            &s("obj"),
        ))?;
        Ok(Outcome::Done)
    }
}

pub fn create_if(link: &str) -> Cmd {
    Cmd::new(IPADM).args(["create-if", link])
}

pub fn create_addr(kind: AddressKind, address: Option<&str>, obj: &str) -> Cmd {
    let c = Cmd::new(IPADM).arg("create-addr");
    match kind {
        AddressKind::Dhcp => c.args(["-T", "dhcp", obj]),
        AddressKind::Addrconf => c.args(["-T", "addrconf", obj]),
        AddressKind::Static => c
            .args(["-T", "static", "-a"])
            .arg(format!("local={}", address.unwrap_or_default()))
            .arg(obj),
    }
}

pub fn route_add(gw: &str) -> Cmd {
    Cmd::new(ROUTE).args(["-p", "add", "default", gw])
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;
    use runner::{Output, Recorder};

    #[test]
    fn macs_from_parseable_show_phys() {
        let m = parse_phys_macs(
            "vioif0:2\\:8\\:20\\:ab\\:cd\\:ef\nvioif1:52\\:54\\:0\\:12\\:34\\:56\n",
        );
        assert_eq!(m[&parse_mac("02:08:20:AB:CD:EF").unwrap()], "vioif0");
        assert_eq!(m[&parse_mac("52-54-00-12-34-56").unwrap()], "vioif1");
        assert!(parse_mac("52:54:00:12:34").is_none());
    }

    #[test]
    fn live_plan_matches_macs_and_skips_existing_address_objects() {
        let rec = Recorder::new();
        rec.on(
            "/usr/sbin/dladm show-phys -m -p -o LINK,ADDRESS",
            Output::ok("vioif0:52\\:54\\:0\\:0\\:0\\:1\nvioif1:52\\:54\\:0\\:0\\:0\\:2\n"),
        )
        .on(
            "/usr/sbin/ipadm show-if -p -o IFNAME",
            Output::ok("lo0\nvioif0\n"),
        )
        .on(
            "/usr/sbin/ipadm show-addr -p -o ADDROBJ",
            Output::ok("lo0/v4\nlo0/v6\nvioif0/dhcp\n"),
        );
        let ctx = Ctx::new(crate::rootfs::Root::new("/"), true, &rec);
        let d = json!({"network": {"interfaces": [
            {"mac": "52:54:00:00:00:01", "addresses": [{"kind": "dhcp"}, {"kind": "addrconf"}]},
            {"mac": "52:54:00:00:00:02", "addresses": [{"kind": "static", "address": "10.0.0.5/24"}]}
        ], "default_route": "10.0.0.1"}});
        let changes = Network.plan(&ctx, d.as_object().unwrap()).unwrap();
        let ids: Vec<&str> = changes.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            ["vioif0/v6", "vioif1/if", "vioif1/v4", "default-route"]
        );
        for c in &changes {
            Network.apply(&ctx, d.as_object().unwrap(), c).unwrap();
        }
        assert_eq!(
            ctx.take_actions(),
            [
                "would run: /usr/sbin/ipadm create-addr -T addrconf vioif0/v6",
                "would run: /usr/sbin/ipadm create-if vioif1",
                "would run: /usr/sbin/ipadm create-addr -T static -a local=10.0.0.5/24 vioif1/v4",
                "would write: /etc/defaultrouter (0644)",
                "would run: /usr/sbin/route -p add default 10.0.0.1",
            ]
        );
    }

    #[test]
    fn unknown_mac_fails_that_change_only() {
        let rec = Recorder::new();
        rec.on(
            "/usr/sbin/dladm show-phys",
            Output::ok("vioif0:52\\:54\\:0\\:0\\:0\\:1\n"),
        )
        // ipadm(8) show-if and show-addr with -p -o FIELD: one value a line.
        .on("/usr/sbin/ipadm show-if -p -o IFNAME", Output::ok("lo0\n"))
        .on(
            "/usr/sbin/ipadm show-addr -p -o ADDROBJ",
            Output::ok("lo0/v4\nlo0/v6\n"),
        );
        let ctx = Ctx::new(crate::rootfs::Root::new("/"), true, &rec);
        let d = json!({"network": {"interfaces": [{"mac": "52:54:00:00:00:09", "addresses": [{"kind": "dhcp"}]}, {"name": "vioif0", "addresses": [{"kind": "dhcp"}]}]}});
        let changes = Network.plan(&ctx, d.as_object().unwrap()).unwrap();
        let err = Network
            .apply(&ctx, d.as_object().unwrap(), &changes[0])
            .unwrap_err();
        assert_eq!(err, "no NIC has MAC address 52:54:00:00:00:09");
        assert_eq!(changes[1].id, "vioif0/if");
    }

    #[test]
    fn alternate_root_writes_defaultrouter_and_skips_ipadm() {
        let t = tempfile::tempdir().unwrap();
        let rec = Recorder::new();
        let d = json!({"network": {"interfaces": [{"name": "vioif0", "addresses": [{"kind": "dhcp"}]}], "default_route": "192.168.1.1"}});
        let r = testing::apply(&Network, t.path(), &rec, d, false).unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("etc/defaultrouter")).unwrap(),
            "192.168.1.1\n"
        );
        let statuses: Vec<_> = r.iter().map(|r| (r.id.as_str(), r.status)).collect();
        use crate::protocol::Status::*;
        assert_eq!(
            statuses,
            [
                ("vioif0/if", Skipped),
                ("vioif0/dhcp", Skipped),
                ("default-route", Ok)
            ]
        );
        assert!(rec.lines().is_empty());
    }
}
