//! network: links found by MAC address, link aggregations and VLANs with `dladm`, IP
//! interfaces and addresses with `ipadm` (idempotent by address object name), the IPv4
//! default route in /etc/defaultrouter, and every route as a persistent `route -p add`.
//!
//! A NIC is the link that `dladm show-phys -m` reports for its MAC address. Its fields are
//! LINK, SLOT, ADDRESS, INUSE and CLIENT (illumos-gate usr/src/cmd/dladm/dladm.c,
//! `phys_m_fields`); ADDRESS is printed by `dladm_aggr_macaddr2str`, which calls
//! `_link_ntoa` (usr/src/lib/libsocket/inet/link_addr.c): each octet `%x`, so lower case
//! without leading zeros (`2:8:20:ab:cd:ef`). In parseable output (`-p`) with more than
//! one field, libofmt escapes the `:` inside a value with a backslash (usr/src/lib/libofmt/
//! common/ofmt.c, `ofmt_print`, `escsep`). Only the primary slot is the NIC's own address.
//! `dladm show-ether` has no MAC address field.
//!
//! The metadata's name for an interface (`eth0`, `ens3`, netplan ids and `set-name`) is
//! never taken for a link: an interface without a MAC address is configured only when the
//! system has a link of exactly that name, else it is skipped with a warning naming it.

use std::collections::{BTreeMap, BTreeSet};

use runner::{Cmd, RunError};
use serde::{Deserialize, Serialize};

use super::{Ctx, Outcome, Planned, Plugin, PluginError};
use crate::schema::{AddressKind, Interface, LinkKind, Network as Spec};

pub struct Network;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    #[serde(default)]
    pub network: Option<Spec>,
}

const DLADM: &str = "/usr/sbin/dladm";
const IPADM: &str = "/usr/sbin/ipadm";
const ROUTE: &str = "/usr/sbin/route";
const STATIC_ROUTES: &str = "/etc/inet/static_routes";

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

/// A datalink name as dladm accepts one: a letter first, letters, digits, `_` and `.`,
/// ending in a digit, at most 31 characters (MAXLINKNAMELEN is 32 with the NUL).
fn valid_link(name: &str) -> bool {
    name.len() <= 31
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.ends_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
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

fn ip_parts(addr: &str) -> Option<(std::net::IpAddr, u8)> {
    let (ip, prefix) = addr.split_once('/')?;
    let ip: std::net::IpAddr = ip.parse().ok()?;
    let p: u8 = prefix.parse().ok()?;
    (p <= if ip.is_ipv4() { 32 } else { 128 }).then_some((ip, p))
}

fn is_link_local6(gw: &str) -> bool {
    matches!(gw.parse::<std::net::IpAddr>(), Ok(std::net::IpAddr::V6(a)) if (a.segments()[0] & 0xffc0) == 0xfe80)
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
            if !sys.ifs.contains(link) {
                out.push(op(
                    "network",
                    format!("{link}/if"),
                    format!("create IP interface {link}"),
                    Op::CreateIf { link: link.clone() },
                ));
            }
            let mut n_static = 0;
            for (j, a) in iface.addresses.iter().enumerate() {
                let v6 = a.address.as_deref().is_some_and(|x| x.contains(':'));
                let name = match &a.name {
                    Some(n) => n.clone(),
                    None => obj_name(a.kind, n_static, v6),
                };
                if a.kind == AddressKind::Static {
                    n_static += 1;
                    let bad = match a.address.as_deref() {
                        None => Some(format!("{link}: a static address needs `address`")),
                        Some(addr) if ip_parts(addr).is_none() => {
                            Some(format!("{link}: address {addr} must be ADDRESS/PREFIX"))
                        }
                        Some(_) => None,
                    };
                    if let Some(m) = bad {
                        out.push(unusable(format!("{link}/address-{j}"), m));
                        continue;
                    }
                }
                if !valid_obj(&name) {
                    out.push(unusable(format!("{link}/address-{j}"), format!("{link}: address object name {name:?} must start with a letter and be at most 32 letters and digits")));
                    continue;
                }
                let obj = format!("{link}/{name}");
                if !sys.objs.contains(&obj) {
                    let what = match a.kind {
                        AddressKind::Dhcp => "DHCP".to_string(),
                        AddressKind::Addrconf => "IPv6 autoconf".to_string(),
                        AddressKind::Static => a.address.clone().unwrap_or_default(),
                    };
                    out.push(op(
                        "network",
                        obj.clone(),
                        format!("add {what} address {obj}"),
                        Op::CreateAddr {
                            obj,
                            kind: a.kind,
                            address: a.address.clone(),
                        },
                    ));
                }
            }
        }
        let static_routes = lines(ctx.read(STATIC_ROUTES)?);
        if let Some(gw) = &spec.default_route {
            if gw.parse::<std::net::Ipv4Addr>().is_err() {
                out.push(unusable(
                    "default-route".into(),
                    format!("default_route {gw:?} is not an IPv4 address"),
                ));
            } else if ctx
                .read("/etc/defaultrouter")?
                .map(|s| s.trim().to_string())
                .as_deref()
                != Some(gw.as_str())
            {
                out.push(op(
                    "network",
                    "default-route",
                    format!("default route via {gw}"),
                    Op::DefaultRoute {
                        gateway: gw.clone(),
                    },
                ));
            }
        }
        let mut routes: Vec<(String, String, Option<String>)> = Vec::new();
        if let Some(gw) = &spec.default_route6 {
            if gw.parse::<std::net::Ipv6Addr>().is_ok() {
                routes.push(("default".into(), gw.clone(), None));
            } else {
                out.push(unusable(
                    "default-route6".into(),
                    format!("default_route6 {gw:?} is not an IPv6 address"),
                ));
            }
        }
        for r in &spec.routes {
            routes.push((
                r.destination.clone(),
                r.gateway.clone(),
                r.interface.clone(),
            ));
        }
        for (n, (dest, gw, on)) in routes.iter().enumerate() {
            let Ok(gip) = gw.parse::<std::net::IpAddr>() else {
                out.push(unusable(
                    format!("route-{n}"),
                    format!("route to {dest}: gateway {gw:?} is not an IP address"),
                ));
                continue;
            };
            let v6 = gip.is_ipv6();
            if dest != "default" {
                let why = match ip_parts(dest) {
                    None => Some(format!("route destination {dest:?} must be ADDRESS/PREFIX")),
                    Some((dip, _)) if dip.is_ipv6() != v6 => Some(format!(
                        "route to {dest} via {gw}: the gateway is of another address family"
                    )),
                    Some(_) => None,
                };
                if let Some(m) = why {
                    out.push(unusable(format!("route-{n}"), m));
                    continue;
                }
            }
            // route(8): `route -p add [-inet6] destination gateway [-ifp ifname]`; -p also
            // records the arguments in /etc/inet/static_routes.
            let mut args: Vec<String> = Vec::new();
            if v6 {
                args.push("-inet6".into());
            }
            let d = match dest.as_str() {
                "0.0.0.0/0" | "::/0" => "default".to_string(),
                d => d.to_string(),
            };
            args.push(d.clone());
            args.push(gw.clone());
            if v6 && is_link_local6(gw) {
                let link = on.as_ref().and_then(|o| resolved.get(o)).or_else(|| {
                    spec.interfaces
                        .iter()
                        .enumerate()
                        .find_map(|(i, _)| links_of[i].as_ref())
                });
                match link {
                    Some(l) => {
                        args.push("-ifp".into());
                        args.push(l.clone());
                    }
                    None => {
                        out.push(skip(
                            format!("route-{n}"),
                            format!(
                                "route to {dest} via link-local {gw}: no interface for it; skipped"
                            ),
                        ));
                        continue;
                    }
                }
            }
            if !static_routes.contains(&args.join(" ")) {
                out.push(op(
                    "network",
                    format!("route-{n}"),
                    format!("route to {d} via {gw}"),
                    Op::Route { args },
                ));
            }
        }
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

impl Network {
    /// The link of a NIC: its `name`, the link with its MAC, or the link named like its
    /// `id` if the system has one. `None` (with a change saying why) when there is none.
    fn physical(
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

fn add_route(ctx: &Ctx, args: &[String]) -> Result<(), PluginError> {
    match ctx.run(route_add(args)) {
        Ok(_) => Ok(()),
        // A route that is already there is what we want.
        Err(PluginError::Command(RunError::Failed { stderr_tail, .. }))
            if stderr_tail.contains("entry exists") =>
        {
            Ok(())
        }
        Err(e) => Err(e),
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

pub fn route_add(args: &[String]) -> Cmd {
    Cmd::new(ROUTE).args(["-p", "add"]).args(args)
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
    const PHYS: &str = "vioif0:primary:52\\:54\\:0\\:0\\:0\\:1\nvioif1:primary:52\\:54\\:0\\:0\\:0\\:2\nvioif1:1:2\\:8\\:20\\:0\\:0\\:9\nvioif2:primary:52\\:54\\:0\\:0\\:0\\:3\n";

    #[test]
    fn macs_from_parseable_show_phys_primary_slots_only() {
        let m = parse_phys_macs(PHYS);
        assert_eq!(m[&parse_mac("52:54:00:00:00:01").unwrap()], "vioif0");
        assert_eq!(m[&parse_mac("52-54-00-00-00-02").unwrap()], "vioif1");
        assert!(!m.contains_key(&parse_mac("02:08:20:00:00:09").unwrap()));
        assert!(parse_mac("52:54:00:12:34").is_none());
    }

    fn live_ctx(rec: &Recorder) -> Ctx<'_> {
        Ctx::new(crate::rootfs::Root::new("/"), true, rec)
    }

    fn run_all(ctx: &Ctx, d: &Value) -> Vec<Planned<Op>> {
        let d = testing::input(&Network, d.clone());
        let changes = Network.plan(ctx, &d).unwrap();
        for c in &changes {
            let _ = Network.apply(ctx, &d, &c.change);
        }
        changes
    }

    #[test]
    fn live_plan_matches_macs_and_skips_existing_address_objects() {
        let rec = Recorder::new();
        rec.on(
            "/usr/sbin/dladm show-phys -m -p -o LINK,SLOT,ADDRESS",
            Output::ok(PHYS),
        )
        // dladm(8) show-link -p -o LINK: one link name a line.
        .on(
            "/usr/sbin/dladm show-link -p -o LINK",
            Output::ok("vioif0\nvioif1\nvioif2\n"),
        )
        // ipadm(8) show-if / show-addr -p -o: one value a line.
        .on(
            "/usr/sbin/ipadm show-if -p -o IFNAME",
            Output::ok("lo0\nvioif0\n"),
        )
        .on(
            "/usr/sbin/ipadm show-addr -p -o ADDROBJ",
            Output::ok("lo0/v4\nlo0/v6\nvioif0/dhcp\n"),
        );
        let ctx = live_ctx(&rec);
        let d = json!({"network": {"interfaces": [
            {"id": "eth0", "mac": "52:54:00:00:00:01", "addresses": [{"kind": "dhcp"}, {"kind": "addrconf"}]},
            {"id": "eth1", "mac": "52:54:00:00:00:02", "addresses": [{"kind": "static", "address": "10.0.0.5/24"}]}
        ], "default_route": "10.0.0.1"}});
        let changes = run_all(&ctx, &d);
        let ids: Vec<&str> = changes.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            ["vioif0/v6", "vioif1/if", "vioif1/v4", "default-route"]
        );
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
    fn a_linux_name_without_mac_is_skipped_with_a_warning_never_plumbed() {
        let rec = Recorder::new();
        // dladm(8) show-link -p -o LINK: one link name a line.
        rec.on(
            "/usr/sbin/dladm show-link -p -o LINK",
            Output::ok("vioif0\n"),
        )
        // ipadm(8) show-if and show-addr with -p -o FIELD: one value a line.
        .on("/usr/sbin/ipadm show-if -p -o IFNAME", Output::ok("lo0\n"))
        .on(
            "/usr/sbin/ipadm show-addr -p -o ADDROBJ",
            Output::ok("lo0/v4\nlo0/v6\n"),
        );
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
    fn bonds_vlans_mtu_ipv6_routes_and_warnings() {
        let rec = Recorder::new();
        rec.on(
            "/usr/sbin/dladm show-phys -m -p -o LINK,SLOT,ADDRESS",
            Output::ok(PHYS),
        )
        .on(
            "/usr/sbin/dladm show-link -p -o LINK",
            Output::ok("vioif0\nvioif1\nvioif2\n"),
        )
        .on("/usr/sbin/ipadm show-if -p -o IFNAME", Output::ok("lo0\n"))
        .on(
            "/usr/sbin/ipadm show-addr -p -o ADDROBJ",
            Output::ok("lo0/v4\n"),
        )
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
    fn persistent_routes_already_recorded_are_not_planned_again() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc/inet")).unwrap();
        // route(8) -p keeps the arguments after `add` one route a line in static_routes.
        std::fs::write(
            t.path().join("etc/inet/static_routes"),
            "# File generated by route(8) - do not edit.\n10.0.0.0/8 192.0.2.1\n",
        )
        .unwrap();
        let rec = Recorder::new();
        let d = json!({"network": {"routes": [
            {"destination": "10.0.0.0/8", "gateway": "192.0.2.1"},
            {"destination": "2001:db8:1::/48", "gateway": "2001:db8::1"}]}});
        let changes = testing::plan(&Network, t.path(), &rec, d).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(
            changes[0].summary,
            "route to 2001:db8:1::/48 via 2001:db8::1"
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
    fn unknown_mac_fails_that_change_only() {
        let rec = Recorder::new();
        rec.on(
            "/usr/sbin/dladm show-phys",
            Output::ok("vioif0:primary:52\\:54\\:0\\:0\\:0\\:1\n"),
        )
        // dladm(8) show-link -p -o LINK: one link name a line.
        .on(
            "/usr/sbin/dladm show-link -p -o LINK",
            Output::ok("vioif0\n"),
        )
        // ipadm(8) show-if and show-addr with -p -o FIELD: one value a line.
        .on("/usr/sbin/ipadm show-if -p -o IFNAME", Output::ok("lo0\n"))
        .on(
            "/usr/sbin/ipadm show-addr -p -o ADDROBJ",
            Output::ok("lo0/v4\nlo0/v6\n"),
        );
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
