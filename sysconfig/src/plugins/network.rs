//! network: links found by MAC address, link aggregations and VLANs with `dladm`, IP
//! interfaces and addresses with `ipadm` (idempotent by address object name), the IPv4
//! default route in /etc/defaultrouter, and every route as a persistent `route -p add`.
//!
//! The metadata's name for an interface (`eth0`, `ens3`, netplan ids and `set-name`) is
//! never taken for a link: an interface without a MAC address is configured only when the
//! system has a link of exactly that name, else it is skipped with a warning naming it.

use std::collections::{BTreeMap, BTreeSet};

use runner::Cmd;
use serde::{Deserialize, Serialize};

use super::{Ctx, Outcome, Planned, Plugin, PluginError};
use crate::schema::{AddressKind, Interface, LinkKind, Network as Spec};

mod addrs;
mod links;
mod routes;

use addrs::plan_addresses;
pub use addrs::{create_addr, create_if};
use links::valid_link;
pub use links::{create_aggr, create_vlan, parse_mac, parse_phys_macs};
pub use routes::route_add;
use routes::{add_route, plan_routes};

pub struct Network;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    #[serde(default)]
    pub network: Option<Spec>,
}

const DLADM: &str = "/usr/sbin/dladm";
const IPADM: &str = "/usr/sbin/ipadm";

/// What one change does; the plan computes it, apply runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Op {
    /// Reported in the plan, nothing to run.
    Skip {
        why: String,
    },
    /// Fails this change only.
    Error {
        message: String,
    },
    CreateAggr {
        link: String,
        members: Vec<String>,
        lacp: Option<String>,
        timer: Option<String>,
        policy: Option<String>,
    },
    CreateVlan {
        link: String,
        over: String,
        vid: u16,
    },
    SetMtu {
        link: String,
        mtu: u32,
    },
    CreateIf {
        link: String,
    },
    CreateAddr {
        obj: String,
        kind: AddressKind,
        address: Option<String>,
    },
    /// /etc/defaultrouter and the live default route.
    DefaultRoute {
        gateway: String,
    },
    /// `route -p add ARGS`.
    Route {
        args: Vec<String>,
    },
}

fn op(key: &'static str, id: impl Into<String>, summary: impl Into<String>, o: Op) -> Planned<Op> {
    Planned::new(key, id, summary, o)
}

fn label(i: usize, iface: &Interface) -> String {
    iface
        .id
        .clone()
        .or(iface.name.clone())
        .or(iface.mac.clone())
        .unwrap_or_else(|| format!("interfaces[{i}]"))
}

/// What the running system has.
#[derive(Default)]
struct Live {
    macs: BTreeMap<[u8; 6], String>,
    links: BTreeSet<String>,
    ifs: BTreeSet<String>,
    objs: BTreeSet<String>,
}

fn lines(t: Option<String>) -> BTreeSet<String> {
    t.unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

impl Plugin for Network {
    const NAME: &'static str = "network";
    const KEYS: &'static [&'static str] = &["network"];

    type Input = Input;
    type Change = Op;

    fn plan(&self, ctx: &Ctx, input: &Input) -> Result<Vec<Planned<Op>>, PluginError> {
        let Some(spec) = &input.network else {
            return Ok(vec![]);
        };
        let live = ctx.live();
        let mut sys = Live::default();
        if live {
            if spec.interfaces.iter().any(|i| i.mac.is_some()) {
                // dladm(8) show-phys: -m shows MAC addresses, -p parseable, -o fields.
                sys.macs = ctx
                    .query(Cmd::new(DLADM).args([
                        "show-phys",
                        "-m",
                        "-p",
                        "-o",
                        "LINK,SLOT,ADDRESS",
                    ]))?
                    .map(|t| parse_phys_macs(&t))
                    .unwrap_or_default();
            }
            sys.links =
                lines(ctx.query(Cmd::new(DLADM).args(["show-link", "-p", "-o", "LINK"]))?);
            sys.ifs = lines(ctx.query(Cmd::new(IPADM).args(["show-if", "-p", "-o", "IFNAME"]))?);
            sys.objs =
                lines(ctx.query(Cmd::new(IPADM).args(["show-addr", "-p", "-o", "ADDROBJ"]))?);
        }
        let mut out = Vec::new();
        for (i, w) in spec.warnings.iter().enumerate() {
            out.push(op(
                "network",
                format!("warning-{i}"),
                format!("warning: {w}"),
                Op::Skip { why: w.clone() },
            ));
        }
        // The link of every interface, by its id (and name), once resolved.
        let mut resolved: BTreeMap<String, String> = BTreeMap::new();
        let mut links_of: Vec<Option<String>> = vec![None; spec.interfaces.len()];
        let mut n_aggr = 0;
        // NICs first, then the aggregations over them, then the VLANs over either.
        for pass in [LinkKind::Physical, LinkKind::Bond, LinkKind::Vlan] {
            for (i, iface) in spec.interfaces.iter().enumerate() {
                if iface.kind != pass {
                    continue;
                }
                let what = label(i, iface);
                let link = match pass {
                    LinkKind::Physical => self.physical(i, iface, live, &sys, &mut out)?,
                    LinkKind::Bond => {
                        let link = match &iface.name {
                            Some(n) => n.clone(),
                            None => loop {
                                let n = format!("aggr{n_aggr}");
                                n_aggr += 1;
                                if !resolved.values().any(|l| *l == n) {
                                    break n;
                                }
                            },
                        };
                        let members: Option<Vec<String>> = iface
                            .members
                            .iter()
                            .map(|m| resolved.get(m).cloned())
                            .collect();
                        match members {
                            _ if iface.members.is_empty() => {
                                out.push(skip(
                                    format!("{what}/aggr"),
                                    format!("bond {what} has no member interfaces; skipped"),
                                ));
                                None
                            }
                            None => {
                                out.push(skip(format!("{what}/aggr"), format!("bond {what}: a member interface ({}) was not found; skipped", iface.members.join(", "))));
                                None
                            }
                            Some(members) => {
                                if !sys.links.contains(&link) {
                                    out.push(op(
                                        "network",
                                        format!("{link}/aggr"),
                                        format!(
                                            "create link aggregation {link} over {}",
                                            members.join(", ")
                                        ),
                                        Op::CreateAggr {
                                            link: link.clone(),
                                            members,
                                            lacp: iface.lacp.clone(),
                                            timer: iface.lacp_timer.clone(),
                                            policy: iface.policy.clone(),
                                        },
                                    ));
                                }
                                Some(link)
                            }
                        }
                    }
                    LinkKind::Vlan => {
                        let over = iface.vlan_link.as_ref().and_then(|l| resolved.get(l));
                        match (over, iface.vlan_id) {
                            (Some(over), Some(vid)) if (1..=4094).contains(&vid) => {
                                let link = iface
                                    .name
                                    .clone()
                                    .unwrap_or_else(|| format!("{over}v{vid}"));
                                if !sys.links.contains(&link) {
                                    out.push(op(
                                        "network",
                                        format!("{link}/vlan"),
                                        format!("create VLAN {vid} link {link} over {over}"),
                                        Op::CreateVlan {
                                            link: link.clone(),
                                            over: over.clone(),
                                            vid,
                                        },
                                    ));
                                }
                                Some(link)
                            }
                            (_, vid) if !(1..=4094).contains(&vid.unwrap_or(0)) => {
                                out.push(skip(
                                    format!("{what}/vlan"),
                                    format!("VLAN {what}: vlan_id must be 1 to 4094; skipped"),
                                ));
                                None
                            }
                            _ => {
                                out.push(skip(
                                    format!("{what}/vlan"),
                                    format!(
                                        "VLAN {what}: its link {} was not found; skipped",
                                        iface.vlan_link.as_deref().unwrap_or("(none)")
                                    ),
                                ));
                                None
                            }
                        }
                    }
                };
                let Some(link) = link else { continue };
                if !valid_link(&link) {
                    out.push(unusable(format!("{what}/link"), format!("interface {what}: {link:?} is not a valid link name (a letter first, letters, digits, `_` or `.`, a digit last, at most 31)")));
                    continue;
                }
                for k in [&iface.id, &iface.name].into_iter().flatten() {
                    resolved.insert(k.clone(), link.clone());
                }
                links_of[i] = Some(link);
            }
        }
        for (i, iface) in spec.interfaces.iter().enumerate() {
            let Some(link) = &links_of[i] else { continue };
            if let Some(mtu) = iface.mtu {
                let current = if live && sys.links.contains(link) {
                    // dladm(8) show-linkprop: -c parseable, -o value, -p property.
                    ctx.query(Cmd::new(DLADM).args([
                        "show-linkprop",
                        "-c",
                        "-o",
                        "VALUE",
                        "-p",
                        "mtu",
                        link,
                    ]))?
                    .map(|t| t.trim().to_string())
                } else {
                    None
                };
                if current.as_deref() != Some(mtu.to_string().as_str()) {
                    out.push(op(
                        "network",
                        format!("{link}/mtu"),
                        format!("set MTU {mtu} on {link}"),
                        Op::SetMtu {
                            link: link.clone(),
                            mtu,
                        },
                    ));
                }
            }
            // An aggregation's members carry no IP; nor does a link without addresses.
            let member = spec.interfaces.iter().any(|b| {
                b.kind == LinkKind::Bond
                    && [&iface.id, &iface.name]
                        .into_iter()
                        .flatten()
                        .any(|k| b.members.contains(k))
            });
            if member || iface.addresses.is_empty() {
                continue;
            }
            plan_addresses(link, iface, &sys, &mut out);
        }
        plan_routes(ctx, spec, &resolved, &links_of, &mut out)?;
        Ok(out)
    }

    fn apply(&self, ctx: &Ctx, _input: &Input, o: &Op) -> Result<Outcome, PluginError> {
        let o = o.clone();
        let live_only = || {
            Outcome::Skipped(
                "dladm, ipadm and route configure the running system; not run under an alternate root".into(),
            )
        };
        match o {
            Op::Skip { why } => Ok(Outcome::Skipped(why)),
            Op::Error { message } => Err(PluginError::Failed(message)),
            Op::DefaultRoute { gateway } => {
                ctx.write(
                    "/etc/defaultrouter",
                    format!("{gateway}\n").as_bytes(),
                    0o644,
                    None,
                )?;
                if ctx.live() {
                    add_route(ctx, &["default".to_string(), gateway])?;
                }
                Ok(Outcome::Done)
            }
            _ if !ctx.live() => Ok(live_only()),
            Op::Route { args } => {
                add_route(ctx, &args)?;
                Ok(Outcome::Done)
            }
            Op::CreateAggr {
                link,
                members,
                lacp,
                timer,
                policy,
            } => {
                ctx.run(create_aggr(
                    &link,
                    &members,
                    lacp.as_deref(),
                    timer.as_deref(),
                    policy.as_deref(),
                ))?;
                Ok(Outcome::Done)
            }
            Op::CreateVlan { link, over, vid } => {
                ctx.run(create_vlan(&link, &over, vid))?;
                Ok(Outcome::Done)
            }
            Op::SetMtu { link, mtu } => {
                ctx.run(
                    Cmd::new(DLADM)
                        .args(["set-linkprop", "-p"])
                        .arg(format!("mtu={mtu}"))
                        .arg(&link),
                )?;
                Ok(Outcome::Done)
            }
            Op::CreateIf { link } => {
                ctx.run(create_if(&link))?;
                Ok(Outcome::Done)
            }
            Op::CreateAddr { obj, kind, address } => {
                ctx.run(create_addr(kind, address.as_deref(), &obj))?;
                Ok(Outcome::Done)
            }
        }
    }
}

/// One unusable entry: reported in the plan, failed on apply, the rest goes on.
fn unusable(id: String, message: String) -> Planned<Op> {
    op(
        "network",
        id,
        format!("unusable: {message}"),
        Op::Error { message },
    )
}

fn skip(id: String, why: String) -> Planned<Op> {
    op("network", id, format!("warning: {why}"), Op::Skip { why })
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;
    use runner::{Output, Recorder};
    use serde_json::{json, Value};

    // Scripted `dladm show-phys -m -p -o LINK,SLOT,ADDRESS`: fields per dladm.c
    // `phys_m_fields` and `print_phys_one_mac_cb` (SLOT is "primary" for slot 0), the
    // address from `_link_ntoa` (`%x` per octet), `:` escaped by libofmt's `ofmt_print`.
    pub(super) const PHYS: &str = "vioif0:primary:52\\:54\\:0\\:0\\:0\\:1\nvioif1:primary:52\\:54\\:0\\:0\\:0\\:2\nvioif1:1:2\\:8\\:20\\:0\\:0\\:9\nvioif2:primary:52\\:54\\:0\\:0\\:0\\:3\n";

    pub(super) fn live_ctx(rec: &Recorder) -> Ctx<'_> {
        Ctx::new(crate::rootfs::Root::new("/"), true, rec)
    }

    /// Scripts the system's links, IP interfaces and address objects as the live plan asks
    /// for them: dladm(8) show-link and ipadm(8) show-if / show-addr with `-p -o FIELD`
    /// print one value a line.
    pub(super) fn live_state<'r>(
        rec: &'r Recorder,
        links: &str,
        ifs: &str,
        addrs: &str,
    ) -> &'r Recorder {
        rec.on("/usr/sbin/dladm show-link -p -o LINK", Output::ok(links))
            .on("/usr/sbin/ipadm show-if -p -o IFNAME", Output::ok(ifs))
            .on("/usr/sbin/ipadm show-addr -p -o ADDROBJ", Output::ok(addrs))
    }

    pub(super) fn run_all(ctx: &Ctx, d: &Value) -> Vec<Planned<Op>> {
        let d = testing::input(&Network, d.clone());
        let changes = Network.plan(ctx, &d).unwrap();
        for c in &changes {
            let _ = Network.apply(ctx, &d, &c.change);
        }
        changes
    }

    #[test]
    fn bonds_vlans_mtu_ipv6_routes_and_warnings() {
        let rec = Recorder::new();
        rec.on(
            "/usr/sbin/dladm show-phys -m -p -o LINK,SLOT,ADDRESS",
            Output::ok(PHYS),
        );
        live_state(&rec, "vioif0\nvioif1\nvioif2\n", "lo0\n", "lo0/v4\n")
            // dladm(8) show-linkprop -c -o VALUE: the bare value.
            .on(
                "/usr/sbin/dladm show-linkprop -c -o VALUE -p mtu vioif2",
                Output::ok("1500\n"),
            );
        let ctx = live_ctx(&rec);
        let d = json!({"network": {"interfaces": [
            {"id": "bond0", "kind": "bond", "members": ["eth0", "eth1"], "lacp": "active", "policy": "L3,L4",
             "addresses": [{"kind": "static", "address": "192.0.2.10/24"}]},
            {"id": "eth0", "mac": "52:54:00:00:00:01"},
            {"id": "eth1", "mac": "52:54:00:00:00:02"},
            {"id": "bond0.100", "kind": "vlan", "vlan_link": "bond0", "vlan_id": 100,
             "addresses": [{"kind": "static", "address": "2001:db8:100::2/64"}]},
            {"id": "eth2", "mac": "52:54:0:0:0:3", "mtu": 9000, "addresses": [{"kind": "addrconf"}]}
        ], "default_route6": "fe80::1",
           "routes": [{"destination": "10.0.0.0/8", "gateway": "192.0.2.1", "interface": "bond0"},
                      {"destination": "2001:db8:200::/48", "gateway": "2001:db8:100::1", "interface": "bond0.100"}],
           "warnings": ["bridge br0: bridges are not configured on illumos; skipped"]}});
        let changes = run_all(&ctx, &d);
        assert_eq!(
            changes
                .iter()
                .map(|c| c.summary.as_str())
                .collect::<Vec<_>>(),
            [
                "warning: bridge br0: bridges are not configured on illumos; skipped",
                "create link aggregation aggr0 over vioif0, vioif1",
                "create VLAN 100 link aggr0v100 over aggr0",
                "create IP interface aggr0",
                "add 192.0.2.10/24 address aggr0/v4",
                "create IP interface aggr0v100",
                "add 2001:db8:100::2/64 address aggr0v100/v6s0",
                "set MTU 9000 on vioif2",
                "create IP interface vioif2",
                "add IPv6 autoconf address vioif2/v6",
                "route to default via fe80::1",
                "route to 10.0.0.0/8 via 192.0.2.1",
                "route to 2001:db8:200::/48 via 2001:db8:100::1",
            ]
        );
        assert_eq!(
            ctx.take_actions(),
            [
                // dladm(8) create-aggr [-P policy] [-L mode] -l link... aggr-link
                "would run: /usr/sbin/dladm create-aggr -P L3,L4 -L active -l vioif0 -l vioif1 aggr0",
                // dladm(8) create-vlan -l link -v vid vlan-link
                "would run: /usr/sbin/dladm create-vlan -l aggr0 -v 100 aggr0v100",
                "would run: /usr/sbin/ipadm create-if aggr0",
                "would run: /usr/sbin/ipadm create-addr -T static -a local=192.0.2.10/24 aggr0/v4",
                "would run: /usr/sbin/ipadm create-if aggr0v100",
                "would run: /usr/sbin/ipadm create-addr -T static -a local=2001:db8:100::2/64 aggr0v100/v6s0",
                // dladm(8) set-linkprop -p prop=value link
                "would run: /usr/sbin/dladm set-linkprop -p mtu=9000 vioif2",
                "would run: /usr/sbin/ipadm create-if vioif2",
                "would run: /usr/sbin/ipadm create-addr -T addrconf vioif2/v6",
                // route(8): -inet6 for IPv6, -ifp names the interface of a link-local gateway
                "would run: /usr/sbin/route -p add -inet6 default fe80::1 -ifp aggr0",
                "would run: /usr/sbin/route -p add 10.0.0.0/8 192.0.2.1",
                "would run: /usr/sbin/route -p add -inet6 2001:db8:200::/48 2001:db8:100::1",
            ]
        );
    }

    #[test]
    fn one_unusable_entry_is_reported_and_the_rest_is_planned() {
        let t = tempfile::tempdir().unwrap();
        let rec = Recorder::new();
        let d = json!({"network": {"interfaces": [
            {"mac": "52:54:00:00:00:zz", "addresses": [{"kind": "dhcp"}]},
            {"name": "vioif1", "addresses": [{"kind": "static", "address": "10.0.0.5"},
                                             {"kind": "static", "address": "10.0.0.6/24"}]},
            {"name": "bad-name", "addresses": [{"kind": "dhcp"}]}
        ], "default_route": "fe80::1",
           "routes": [{"destination": "10.9.0.0/16", "gateway": "2001:db8::1"}]}});
        let changes = testing::plan(&Network, t.path(), &rec, d).unwrap();
        let got: Vec<(&str, &str)> = changes
            .iter()
            .map(|c| (c.id.as_str(), c.summary.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("match-0", "unusable: interface 52:54:00:00:00:zz: \"52:54:00:00:00:zz\" is not a MAC address"),
                ("bad-name/link", "unusable: interface bad-name: \"bad-name\" is not a valid link name (a letter first, letters, digits, `_` or `.`, a digit last, at most 31)"),
                ("vioif1/if", "create IP interface vioif1"),
                ("vioif1/address-0", "unusable: vioif1: address 10.0.0.5 must be ADDRESS/PREFIX"),
                ("vioif1/v4s1", "add 10.0.0.6/24 address vioif1/v4s1"),
                ("default-route", "unusable: default_route \"fe80::1\" is not an IPv4 address"),
                ("route-0", "unusable: route to 10.9.0.0/16 via 2001:db8::1: the gateway is of another address family"),
            ]
        );
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
