//! Network metadata translated into the `network` and `dns` keys: cloud-init
//! `network-config` version 1 and version 2 (netplan style; the document may be wrapped in
//! a top-level `network:` key), and OpenStack's `network_data.json` through
//! [`from_network_data`].
//!
//! What the documents name by Linux interface name (`eth0`, v1 `name`, v2 `set-name` and
//! the ids of `ethernets`) is kept as the interface's `id`: it names the interface in
//! messages and is what bonds and VLANs refer to, but it is never taken for an illumos
//! link name. Interfaces are found on illumos by MAC address (see the network plugin).
//!
//! A document whose shape is wrong (a list where a mapping belongs, a number where a
//! string belongs) stops the run. What illumos cannot express, or what this translation
//! does not know (bridges, Linux-only keys, an unknown subnet type), is a warning by name
//! in `network.warnings`, which the network plugin reports in its plan; the rest applies.

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use super::{Malformed, SourceError};

mod error;

use error::{missing, not_number, wrong, wrong_at};
pub use error::{AddrError, NetError};

pub fn parse(source_name: &'static str, text: &str) -> Result<Map<String, Value>, SourceError> {
    let bad = |m: String| SourceError::malformed(source_name, format!("network-config: {m}"));
    let doc = super::parse_yaml(source_name, "network-config", text)?;
    let doc = match doc {
        Value::Null => return Ok(Map::new()),
        Value::Object(mut m) => match m.remove("network") {
            Some(Value::Object(inner)) => inner,
            Some(v) => {
                return Err(bad(format!(
                    "`network` must be a mapping, not {}",
                    kind_of(&v)
                )))
            }
            None => m,
        },
        v => {
            return Err(bad(format!(
                "the document must be a mapping, not {}",
                kind_of(&v)
            )))
        }
    };
    let mut acc = Acc::default();
    // A type error names the line of the offending key when the document is in block
    // style (the usual output of PyYAML and of the tools that write seeds).
    let wrapped = doc_is_wrapped(text);
    let at_line = |error: NetError| SourceError::Malformed {
        source_name,
        error: Malformed::In {
            path: "network-config".into(),
            error: Box::new(Malformed::Network {
                line: error.path().and_then(|p| locate(text, p, wrapped)),
                error,
            }),
        },
    };
    match doc.get("version") {
        Some(v) if as_u64(v) == Some(1) => v1(&doc, &mut acc).map_err(at_line)?,
        Some(v) if as_u64(v) == Some(2) => v2(&doc, &mut acc).map_err(at_line)?,
        Some(v) => {
            return Err(bad(format!(
                "version {} is not supported (1 or 2)",
                scalar_text(v)
            )))
        }
        None => return Err(bad("version is missing".into())),
    }
    Ok(acc.finish())
}

fn doc_is_wrapped(text: &str) -> bool {
    text.lines().any(|l| l.trim_end() == "network:")
}

/// The 1-based line of a key path such as `ethernets.id0.addresses` or
/// `config[2].subnets[0].address` in a block-style YAML document; `None` when it cannot
/// be followed (flow style, an unexpected layout).
pub fn locate(text: &str, path: &str, wrapped: bool) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let is_key = |l: &str, k: &str| {
        let t = l.trim_start();
        let t = t.strip_prefix("- ").unwrap_or(t).trim_start();
        t.strip_prefix(k).is_some_and(|r| r.starts_with(':'))
            || t.strip_prefix(&format!("'{k}'"))
                .is_some_and(|r| r.starts_with(':'))
            || t.strip_prefix(&format!("\"{k}\""))
                .is_some_and(|r| r.starts_with(':'))
    };
    // (line index, indent of the collection's entries) of the current node
    let mut pos: Option<(usize, usize)> = None;
    let mut segs: Vec<String> = Vec::new();
    if wrapped {
        segs.push("network".into());
    }
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, idx) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        segs.push(key.into());
        if let Some(i) = idx {
            segs.push(format!("[{i}]"));
        }
    }
    for seg in &segs {
        let (start, min) = match pos {
            Some((l, ind)) => (l + 1, ind),
            None => (0, 0),
        };
        let base = pos.map(|(l, _)| indent(lines[l]));
        if let Some(i) = seg
            .strip_prefix('[')
            .and_then(|r| r.trim_end_matches(']').parse::<usize>().ok())
        {
            // The i-th `- ` item below the current key.
            let items: Vec<usize> = (start..lines.len())
                .take_while(|&n| {
                    let l = lines[n];
                    l.trim().is_empty()
                        || l.trim_start().starts_with('#')
                        || base.is_none_or(|b| {
                            indent(l) > b || (indent(l) == b && l.trim_start().starts_with("- "))
                        })
                })
                .filter(|&n| lines[n].trim_start().starts_with("- "))
                .collect();
            let first = *items.first()?;
            let ind = indent(lines[first]);
            let n = *items.iter().filter(|&&n| indent(lines[n]) == ind).nth(i)?;
            // Keys of the item start at the item's dash plus two; the first is on the
            // dash's line, where the next search starts.
            pos = Some((n, ind + 2));
            continue;
        }
        let mut found = None;
        let from = match pos {
            Some((l, _)) if lines[l].trim_start().starts_with("- ") => l,
            _ => start,
        };
        for (n, l) in lines.iter().enumerate().skip(from) {
            if l.trim().is_empty() || l.trim_start().starts_with('#') {
                continue;
            }
            if n > from && pos.is_some() && indent(l) < min {
                break;
            }
            if is_key(l, seg) {
                found = Some(n);
                break;
            }
        }
        let n = found?;
        pos = Some((n, indent(lines[n]) + 1));
    }
    pos.map(|(l, _)| l + 1)
}

/// OpenStack `network_data.json` (config drive, also served by the metadata service).
pub fn from_network_data(text: &str) -> Result<Map<String, Value>, NetError> {
    let v: Value = serde_json::from_str(text).map_err(|e| NetError::Json(e.to_string()))?;
    let mut acc = Acc::default();
    network_data(&v, &mut acc)?;
    Ok(acc.finish())
}

/// What every translation collects.
#[derive(Default)]
pub(crate) struct Acc {
    interfaces: Vec<Map<String, Value>>,
    /// (destination CIDR, gateway, interface id)
    routes: Vec<(String, String, Option<String>)>,
    nameservers: Vec<String>,
    search: Vec<String>,
    warnings: Vec<String>,
}

impl Acc {
    fn warn(&mut self, w: String) {
        tracing::warn!("network metadata: {w}");
        self.warnings.push(w);
    }

    fn route(&mut self, dest: String, gw: String, iface: Option<&str>) {
        let r = (dest, gw, iface.map(String::from));
        if !self.routes.contains(&r) {
            self.routes.push(r);
        }
    }

    fn dns(&mut self, ns: Vec<String>, search: Vec<String>) {
        for n in ns {
            if !self.nameservers.contains(&n) {
                self.nameservers.push(n);
            }
        }
        for s in search {
            if !self.search.contains(&s) {
                self.search.push(s);
            }
        }
    }

    pub(crate) fn finish(self) -> Map<String, Value> {
        let mut out = Map::new();
        let mut net = Map::new();
        let (mut v4, mut v6) = (None, None);
        let mut routes = Vec::new();
        for (dest, gw, iface) in self.routes {
            let slot = match dest.as_str() {
                "0.0.0.0/0" => Some(&mut v4),
                "::/0" => Some(&mut v6),
                _ => None,
            };
            if let Some(slot) = slot {
                if slot.is_none() {
                    *slot = Some(gw);
                    continue;
                }
            }
            let mut r = json!({"destination": dest, "gateway": gw});
            if let Some(i) = iface {
                r["interface"] = json!(i);
            }
            routes.push(r);
        }
        if !self.interfaces.is_empty() {
            net.insert(
                "interfaces".into(),
                Value::Array(self.interfaces.into_iter().map(Value::Object).collect()),
            );
        }
        if let Some(g) = v4 {
            net.insert("default_route".into(), json!(g));
        }
        if let Some(g) = v6 {
            net.insert("default_route6".into(), json!(g));
        }
        if !routes.is_empty() {
            net.insert("routes".into(), Value::Array(routes));
        }
        if !self.warnings.is_empty() {
            net.insert("warnings".into(), json!(self.warnings));
        }
        if !net.is_empty() {
            out.insert("network".into(), Value::Object(net));
        }
        if !self.nameservers.is_empty() || !self.search.is_empty() {
            out.insert(
                "dns".into(),
                json!({"nameservers": self.nameservers, "search": self.search}),
            );
        }
        out
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A string, or a number written where a string belongs (`mtu`, `vlan_id`), as text.
fn get_str(m: &Map<String, Value>, k: &str, at: &str) -> Result<Option<String>, NetError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v @ Value::Number(_)) => Ok(Some(v.to_string())),
        Some(v) => Err(wrong(at, k, "a string", v)),
    }
}

fn get_map<'a>(
    m: &'a Map<String, Value>,
    k: &str,
    at: &str,
) -> Result<Option<&'a Map<String, Value>>, NetError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(v) => Err(wrong(at, k, "a mapping", v)),
    }
}

fn get_list<'a>(m: &'a Map<String, Value>, k: &str, at: &str) -> Result<&'a [Value], NetError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(v) => Err(wrong(at, k, "a list", v)),
    }
}

/// A boolean as cloud-init reads one (`true`, and the YAML 1.1 words `yes`/`on`).
fn get_bool(m: &Map<String, Value>, k: &str, at: &str) -> Result<bool, NetError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "y" => Ok(true),
            "false" | "no" | "off" | "n" => Ok(false),
            _ => Err(wrong_at(
                format!("{at}{k}"),
                "true or false",
                format!("{s:?}"),
            )),
        },
        Some(v) => Err(wrong(at, k, "true or false", v)),
    }
}

/// One string or a list of strings.
fn str_list(m: &Map<String, Value>, k: &str, at: &str) -> Result<Vec<String>, NetError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::String(s)) => Ok(s.split_whitespace().map(String::from).collect()),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, x)| match x {
                Value::String(s) => Ok(s.clone()),
                v => Err(wrong(at, &format!("{k}[{i}]"), "a string", v)),
            })
            .collect(),
        Some(v) => Err(wrong(at, k, "a list of strings", v)),
    }
}

/// A netmask (IPv4 dotted or IPv6) to its prefix length; `None` for a mask with holes.
pub fn mask_to_prefix(mask: &str) -> Option<u32> {
    match mask.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let ones = bits.leading_ones();
            (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones)
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let ones = bits.leading_ones();
            (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones)
        }
    }
}

/// `ADDR/PREFIX` from an address in CIDR form, `ADDR/NETMASK` form, or an address and a
/// separate netmask (dotted, IPv6 or a prefix length).
pub fn to_cidr(addr: &str, mask: Option<&str>) -> Result<String, AddrError> {
    let (ip, inline) = match addr.split_once('/') {
        Some((ip, m)) => (ip, Some(m)),
        None => (addr, None),
    };
    let parsed: IpAddr = ip.parse().map_err(|_| AddrError::NotIp(ip.into()))?;
    let max = if parsed.is_ipv4() { 32 } else { 128 };
    let Some(m) = inline.or(mask) else {
        return Err(AddrError::NoPrefix(addr.into()));
    };
    let prefix = match m.parse::<u32>() {
        Ok(p) if p <= max => p,
        Ok(_) => {
            return Err(AddrError::PrefixTooLong {
                prefix: m.into(),
                ip: ip.into(),
            })
        }
        Err(_) => mask_to_prefix(m).ok_or_else(|| AddrError::BadNetmask(m.into()))?,
    };
    Ok(format!("{ip}/{prefix}"))
}

fn is_v6(addr: &str) -> bool {
    addr.contains(':')
}

/// A route destination as CIDR; `default` per the gateway's family.
fn route_dest(dest: &str, mask: Option<&str>, gw: &str) -> Result<String, AddrError> {
    match dest {
        "default" | "" => Ok(if is_v6(gw) { "::/0" } else { "0.0.0.0/0" }.into()),
        "0.0.0.0" if mask.is_none() => Ok("0.0.0.0/0".into()),
        "::" if mask.is_none() => Ok("::/0".into()),
        d => {
            let host = if is_v6(d) { "128" } else { "32" };
            to_cidr(d, mask.or(if d.contains('/') { None } else { Some(host) }))
        }
    }
}

fn static_addr(cidr: String) -> Value {
    json!({"kind": "static", "address": cidr})
}

/// Keys a v1 entry may have that need no translation on illumos or cannot be expressed;
/// the second list is reported.
const V1_QUIET: &[&str] = &["type", "name", "mac_address", "subnets", "mtu"];

fn v1(doc: &Map<String, Value>, acc: &mut Acc) -> Result<(), NetError> {
    let config = match doc.get("config") {
        Some(Value::Array(a)) => a,
        Some(v) => return Err(wrong("", "config", "a list", v)),
        None => return Err(NetError::NoConfig),
    };
    for (i, item) in config.iter().enumerate() {
        let at = format!("config[{i}].");
        let m = item
            .as_object()
            .ok_or_else(|| wrong_at(format!("config[{i}]"), "a mapping", kind_of(item).into()))?;
        let ty = get_str(m, "type", &at)?.ok_or_else(|| missing(&at, "type"))?;
        let name = get_str(m, "name", &at)?;
        let label = name.clone().unwrap_or_else(|| format!("config[{i}]"));
        let mut iface = Map::new();
        match ty.as_str() {
            "physical" => {}
            "bond" => {
                iface.insert("kind".into(), json!("bond"));
                let members = str_list(m, "bond_interfaces", &at)?;
                iface.insert("members".into(), json!(members));
                let params = get_map(m, "params", &at)?.cloned().unwrap_or_default();
                bond_params(
                    &label,
                    params.get("bond-mode"),
                    params.get("bond-xmit-hash-policy"),
                    params.get("bond-lacp-rate"),
                    &mut iface,
                    acc,
                );
            }
            "vlan" => {
                iface.insert("kind".into(), json!("vlan"));
                let link =
                    get_str(m, "vlan_link", &at)?.ok_or_else(|| missing(&at, "vlan_link"))?;
                let id = m
                    .get("vlan_id")
                    .and_then(as_u64)
                    .ok_or_else(|| not_number(&at, "vlan_id"))?;
                iface.insert("vlan_link".into(), json!(link));
                iface.insert("vlan_id".into(), json!(id));
            }
            "nameserver" => {
                let ns = str_list(m, "address", &at)?;
                let search = str_list(m, "search", &at)?;
                acc.dns(ns, search);
                continue;
            }
            "route" => {
                let gw = get_str(m, "gateway", &at)?.ok_or_else(|| missing(&at, "gateway"))?;
                let dest = get_str(m, "destination", &at)?
                    .or(get_str(m, "network", &at)?)
                    .unwrap_or_default();
                match route_dest(&dest, get_str(m, "netmask", &at)?.as_deref(), &gw) {
                    Ok(d) => acc.route(d, gw, None),
                    Err(e) => acc.warn(format!("{at}route skipped: {e}")),
                }
                continue;
            }
            "bridge" => {
                acc.warn(format!(
                    "bridge {label}: bridges are not configured on illumos; skipped"
                ));
                continue;
            }
            other => {
                acc.warn(format!(
                    "{label}: network-config v1 type {other:?} is not supported; skipped"
                ));
                continue;
            }
        }
        let extra: &[&str] = match ty.as_str() {
            "bond" => &["bond_interfaces", "params"],
            "vlan" => &["vlan_link", "vlan_id"],
            _ => &[],
        };
        for k in m.keys() {
            if !V1_QUIET.contains(&k.as_str()) && !extra.contains(&k.as_str()) {
                acc.warn(format!("{label}: {k} is not supported on illumos; ignored"));
            }
        }
        if let Some(n) = &name {
            iface.insert("id".into(), json!(n));
        }
        if let Some(mac) = get_str(m, "mac_address", &at)? {
            iface.insert("mac".into(), json!(mac));
        }
        if let Some(mtu) = m.get("mtu").and_then(as_u64) {
            iface.insert("mtu".into(), json!(mtu));
        }
        let mut addrs = Vec::new();
        for (j, s) in get_list(m, "subnets", &at)?.iter().enumerate() {
            let sat = format!("{at}subnets[{j}].");
            let s = s.as_object().ok_or_else(|| {
                wrong_at(format!("{at}subnets[{j}]"), "a mapping", kind_of(s).into())
            })?;
            v1_subnet(s, &sat, &label, name.as_deref(), &mut addrs, acc)?;
        }
        iface.insert("addresses".into(), Value::Array(addrs));
        acc.interfaces.push(iface);
    }
    Ok(())
}

fn v1_subnet(
    s: &Map<String, Value>,
    at: &str,
    label: &str,
    id: Option<&str>,
    addrs: &mut Vec<Value>,
    acc: &mut Acc,
) -> Result<(), NetError> {
    let ty = get_str(s, "type", at)?.ok_or_else(|| missing(at, "type"))?;
    match ty.as_str() {
        "dhcp" | "dhcp4" => addrs.push(json!({"kind": "dhcp"})),
        "dhcp6" | "ipv6_slaac" | "ipv6_dhcpv6-stateless" | "ipv6_dhcpv6-stateful" => {
            if !addrs.iter().any(|a| a["kind"] == "addrconf") {
                addrs.push(json!({"kind": "addrconf"}))
            }
        }
        "static" | "static6" => {
            let a = get_str(s, "address", at)?.ok_or_else(|| missing(at, "address"))?;
            let mask = get_str(s, "netmask", at)?.or(get_str(s, "prefix", at)?);
            match to_cidr(&a, mask.as_deref()) {
                Ok(c) => addrs.push(static_addr(c)),
                Err(e) => {
                    acc.warn(format!("{label}: static address skipped: {e}"));
                    return Ok(());
                }
            }
            if let Some(g) = get_str(s, "gateway", at)? {
                let dest = if is_v6(&g) { "::/0" } else { "0.0.0.0/0" };
                acc.route(dest.into(), g, id);
            }
        }
        "manual" => {}
        other => acc.warn(format!(
            "{label}: subnet type {other:?} is not supported; skipped"
        )),
    }
    for (k, r) in get_list(s, "routes", at)?.iter().enumerate() {
        let rat = format!("{at}routes[{k}].");
        let r = r
            .as_object()
            .ok_or_else(|| wrong_at(rat.clone(), "a mapping", kind_of(r).into()))?;
        let Some(gw) = get_str(r, "gateway", &rat)? else {
            acc.warn(format!("{label}: a route without gateway is skipped"));
            continue;
        };
        let dest = get_str(r, "destination", &rat)?
            .or(get_str(r, "network", &rat)?)
            .unwrap_or_default();
        match route_dest(&dest, get_str(r, "netmask", &rat)?.as_deref(), &gw) {
            Ok(d) => acc.route(d, gw, id),
            Err(e) => acc.warn(format!("{label}: route skipped: {e}")),
        }
    }
    acc.dns(
        str_list(s, "dns_nameservers", at)?,
        str_list(s, "dns_search", at)?,
    );
    Ok(())
}

/// Bond parameters (v1 `bond-mode`, v2 `mode`, and the hash policy) as dladm create-aggr
/// options: LACP mode (`-L`), LACP timer (`-T`) and load-spreading policy (`-P`).
fn bond_params(
    label: &str,
    mode: Option<&Value>,
    hash: Option<&Value>,
    rate: Option<&Value>,
    iface: &mut Map<String, Value>,
    acc: &mut Acc,
) {
    match mode.map(scalar_text).as_deref() {
        Some("802.3ad") | Some("4") => {
            iface.insert("lacp".into(), json!("active"));
        }
        None | Some("balance-xor") | Some("2") => {}
        Some(m) => acc.warn(format!(
            "bond {label}: mode {m} has no illumos link aggregation equivalent; \
             created as a static aggregation"
        )),
    }
    match hash.map(scalar_text).as_deref() {
        None => {}
        Some("layer2") => {
            iface.insert("policy".into(), json!("L2"));
        }
        Some("layer2+3") => {
            iface.insert("policy".into(), json!("L2,L3"));
        }
        Some("layer3+4") => {
            iface.insert("policy".into(), json!("L3,L4"));
        }
        Some(h) => acc.warn(format!(
            "bond {label}: transmit hash policy {h} has no illumos equivalent; the default (L4) is used"
        )),
    }
    match rate.map(scalar_text).as_deref() {
        None => {}
        Some("fast") | Some("1") => {
            iface.insert("lacp_timer".into(), json!("short"));
        }
        Some("slow") | Some("0") => {
            iface.insert("lacp_timer".into(), json!("long"));
        }
        Some(r) => acc.warn(format!("bond {label}: lacp rate {r} is not known; ignored")),
    }
}

/// Keys of a netplan device this translation reads.
const V2_COMMON: &[&str] = &[
    "dhcp4",
    "dhcp6",
    "addresses",
    "gateway4",
    "gateway6",
    "routes",
    "nameservers",
    "mtu",
];

/// Keys with nothing to do on illumos, ignored without a warning.
const V2_QUIET: &[&str] = &["set-name", "match", "renderer", "optional", "critical"];

fn v2(doc: &Map<String, Value>, acc: &mut Acc) -> Result<(), NetError> {
    for k in doc.keys() {
        match k.as_str() {
            "version" | "renderer" | "ethernets" | "bonds" | "vlans" => {}
            "bridges" => {
                for id in get_map(doc, k, "")?.into_iter().flat_map(|m| m.keys()) {
                    acc.warn(format!(
                        "bridge {id}: bridges are not configured on illumos; skipped"
                    ));
                }
            }
            other => acc.warn(format!(
                "network-config v2 section {other:?} is not supported; skipped"
            )),
        }
    }
    for (section, kind) in [
        ("ethernets", "physical"),
        ("bonds", "bond"),
        ("vlans", "vlan"),
    ] {
        let Some(devs) = get_map(doc, section, "")? else {
            continue;
        };
        for (id, d) in devs {
            let at = format!("{section}.{id}.");
            let d = d.as_object().ok_or_else(|| {
                wrong_at(format!("{section}.{id}"), "a mapping", kind_of(d).into())
            })?;
            let mut iface = Map::new();
            iface.insert("id".into(), json!(id));
            let own: &[&str] = match kind {
                "bond" => &["interfaces", "parameters", "macaddress"],
                "vlan" => &["id", "link"],
                _ => &[],
            };
            for k in d.keys() {
                let k = k.as_str();
                if !V2_COMMON.contains(&k) && !V2_QUIET.contains(&k) && !own.contains(&k) {
                    acc.warn(format!(
                        "{section}.{id}: {k} is not supported on illumos; ignored"
                    ));
                }
            }
            match kind {
                "physical" => {
                    if let Some(m) = get_map(d, "match", &at)? {
                        if let Some(mac) = get_str(m, "macaddress", &format!("{at}match."))? {
                            iface.insert("mac".into(), json!(mac));
                        }
                        for k in m.keys().filter(|k| *k != "macaddress") {
                            acc.warn(format!(
                                "{section}.{id}: match by {k} is not supported on illumos (only macaddress)"
                            ));
                        }
                    }
                }
                "bond" => {
                    iface.insert("kind".into(), json!("bond"));
                    iface.insert("members".into(), json!(str_list(d, "interfaces", &at)?));
                    let p = get_map(d, "parameters", &at)?.cloned().unwrap_or_default();
                    bond_params(
                        id,
                        p.get("mode"),
                        p.get("transmit-hash-policy"),
                        p.get("lacp-rate"),
                        &mut iface,
                        acc,
                    );
                    if let Some(mac) = get_str(d, "macaddress", &at)? {
                        iface.insert("mac".into(), json!(mac));
                    }
                }
                _ => {
                    iface.insert("kind".into(), json!("vlan"));
                    let link = get_str(d, "link", &at)?.ok_or_else(|| missing(&at, "link"))?;
                    let vid = d
                        .get("id")
                        .and_then(as_u64)
                        .ok_or_else(|| not_number(&at, "id"))?;
                    iface.insert("vlan_link".into(), json!(link));
                    iface.insert("vlan_id".into(), json!(vid));
                }
            }
            if let Some(mtu) = d.get("mtu").and_then(as_u64) {
                iface.insert("mtu".into(), json!(mtu));
            }
            let mut addrs = Vec::new();
            if get_bool(d, "dhcp4", &at)? {
                addrs.push(json!({"kind": "dhcp"}));
            }
            if get_bool(d, "dhcp6", &at)? {
                addrs.push(json!({"kind": "addrconf"}));
            }
            for (j, a) in get_list(d, "addresses", &at)?.iter().enumerate() {
                // An address is a string, or a one-key mapping `ADDR: {lifetime, label}`.
                let a = match a {
                    Value::String(s) => s.clone(),
                    Value::Object(o) if o.len() == 1 => {
                        o.keys().next().cloned().unwrap_or_default()
                    }
                    v => {
                        return Err(wrong(
                            at.as_str(),
                            &format!("addresses[{j}]"),
                            "a string",
                            v,
                        ))
                    }
                };
                match to_cidr(&a, None) {
                    Ok(c) => addrs.push(static_addr(c)),
                    Err(e) => acc.warn(format!("{section}.{id}: address skipped: {e}")),
                }
            }
            for g in ["gateway4", "gateway6"] {
                if let Some(gw) = get_str(d, g, &at)? {
                    let dest = if is_v6(&gw) { "::/0" } else { "0.0.0.0/0" };
                    acc.route(dest.into(), gw, Some(id));
                }
            }
            for (k, r) in get_list(d, "routes", &at)?.iter().enumerate() {
                let rat = format!("{at}routes[{k}].");
                let r = r.as_object().ok_or_else(|| {
                    wrong_at(format!("{at}routes[{k}]"), "a mapping", kind_of(r).into())
                })?;
                let to = get_str(r, "to", &rat)?.unwrap_or_default();
                let Some(via) = get_str(r, "via", &rat)? else {
                    acc.warn(format!("{section}.{id}: route to {to} has no via; skipped"));
                    continue;
                };
                for k in r.keys() {
                    if !["to", "via", "metric"].contains(&k.as_str()) {
                        acc.warn(format!(
                            "{section}.{id}: route to {to}: {k} is not supported on illumos; ignored"
                        ));
                    }
                }
                match route_dest(&to, None, &via) {
                    Ok(dest) => acc.route(dest, via, Some(id)),
                    Err(e) => acc.warn(format!("{section}.{id}: route skipped: {e}")),
                }
            }
            if let Some(ns) = get_map(d, "nameservers", &at)? {
                let nat = format!("{at}nameservers.");
                acc.dns(
                    str_list(ns, "addresses", &nat)?,
                    str_list(ns, "search", &nat)?,
                );
            }
            iface.insert("addresses".into(), Value::Array(addrs));
            acc.interfaces.push(iface);
        }
    }
    Ok(())
}

/// `network_data.json`: `links` (phy, bond, vlan), `networks` (ipv4, ipv6, ipv4_dhcp,
/// ipv6_dhcp, ipv6_slaac, ipv6_dhcpv6-stateless/-stateful) with their routes, and `dns`
/// `services`.
fn network_data(v: &Value, acc: &mut Acc) -> Result<(), NetError> {
    let v = v.as_object().ok_or(NetError::NotAnObject)?;
    let links = get_list(v, "links", "")?;
    let networks = get_list(v, "networks", "")?;
    for (i, l) in links.iter().enumerate() {
        let at = format!("links[{i}].");
        let l = l
            .as_object()
            .ok_or_else(|| wrong("", &format!("links[{i}]"), "an object", l))?;
        let id = get_str(l, "id", &at)?.unwrap_or_else(|| format!("links[{i}]"));
        let mut iface = Map::new();
        iface.insert("id".into(), json!(id));
        let ty = get_str(l, "type", &at)?.unwrap_or_else(|| "phy".into());
        match ty.as_str() {
            "bond" => {
                iface.insert("kind".into(), json!("bond"));
                iface.insert("members".into(), json!(str_list(l, "bond_links", &at)?));
                bond_params(
                    &id,
                    l.get("bond_mode"),
                    l.get("bond_xmit_hash_policy"),
                    None,
                    &mut iface,
                    acc,
                );
            }
            "vlan" => {
                iface.insert("kind".into(), json!("vlan"));
                let link =
                    get_str(l, "vlan_link", &at)?.ok_or_else(|| missing(&at, "vlan_link"))?;
                let vid = l
                    .get("vlan_id")
                    .and_then(as_u64)
                    .ok_or_else(|| not_number(&at, "vlan_id"))?;
                iface.insert("vlan_link".into(), json!(link));
                iface.insert("vlan_id".into(), json!(vid));
            }
            // Every other type is a physical NIC to the guest (OpenStack names the
            // hypervisor side: ovs, bridge, tap, vif, phy, hw_veb...).
            _ => {}
        }
        let mac = get_str(l, "ethernet_mac_address", &at)?;
        if let Some(mac) = &mac {
            iface.insert("mac".into(), json!(mac));
        } else if ty != "vlan" && ty != "bond" {
            acc.warn(format!("link {id}: no ethernet_mac_address; skipped"));
            continue;
        }
        if let Some(mtu) = l.get("mtu").and_then(as_u64) {
            iface.insert("mtu".into(), json!(mtu));
        }
        let mut addrs = Vec::new();
        for (j, n) in networks.iter().enumerate() {
            let nat = format!("networks[{j}].");
            let n = n.as_object().ok_or_else(|| {
                wrong_at(format!("networks[{j}]"), "an object", kind_of(n).into())
            })?;
            if get_str(n, "link", &nat)?.as_deref() != Some(id.as_str()) {
                continue;
            }
            let nid = get_str(n, "id", &nat)?.unwrap_or_else(|| format!("networks[{j}]"));
            match get_str(n, "type", &nat)?.as_deref() {
                Some("ipv4_dhcp") => addrs.push(json!({"kind": "dhcp"})),
                Some("ipv6_slaac")
                | Some("ipv6_dhcp")
                | Some("ipv6_dhcpv6-stateless")
                | Some("ipv6_dhcpv6-stateful") => {
                    if !addrs.iter().any(|a| a["kind"] == "addrconf") {
                        addrs.push(json!({"kind": "addrconf"}));
                    }
                }
                Some("ipv4") | Some("ipv6") => {
                    let a = get_str(n, "ip_address", &nat)?
                        .ok_or_else(|| missing(&nat, "ip_address"))?;
                    match to_cidr(&a, get_str(n, "netmask", &nat)?.as_deref()) {
                        Ok(c) => addrs.push(static_addr(c)),
                        Err(e) => {
                            acc.warn(format!("network {nid}: skipped: {e}"));
                            continue;
                        }
                    }
                    for (k, r) in get_list(n, "routes", &nat)?.iter().enumerate() {
                        let rat = format!("{nat}routes[{k}].");
                        let r = r
                            .as_object()
                            .ok_or_else(|| wrong_at(rat.clone(), "an object", kind_of(r).into()))?;
                        let Some(gw) = get_str(r, "gateway", &rat)? else {
                            continue;
                        };
                        let dest = get_str(r, "network", &rat)?.unwrap_or_default();
                        let mask = get_str(r, "netmask", &rat)?;
                        match route_dest(&dest, mask.as_deref(), &gw) {
                            Ok(d) => acc.route(d, gw, Some(&id)),
                            Err(e) => acc.warn(format!("network {nid}: route skipped: {e}")),
                        }
                    }
                    acc.dns(
                        str_list(n, "dns_nameservers", &nat)?,
                        str_list(n, "dns_search", &nat)?,
                    );
                }
                other => acc.warn(format!(
                    "network {nid}: type {} is not supported; skipped",
                    other.unwrap_or("(none)")
                )),
            }
        }
        iface.insert("addresses".into(), Value::Array(addrs));
        acc.interfaces.push(iface);
    }
    let mut ns = Vec::new();
    for (i, s) in get_list(v, "services", "")?.iter().enumerate() {
        let at = format!("services[{i}].");
        let Some(s) = s.as_object() else {
            return Err(wrong("", &format!("services[{i}]"), "an object", s));
        };
        if get_str(s, "type", &at)?.as_deref() == Some("dns") {
            ns.extend(get_str(s, "address", &at)?);
        }
    }
    acc.dns(ns, vec![]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_physical_static_and_nameserver() {
        let m = parse(
            "t",
            "version: 1\nconfig:\n  - type: physical\n    name: eth0\n    mac_address: '52:54:00:12:34:56'\n    subnets:\n      - type: static\n        address: 192.168.1.10\n        netmask: 255.255.255.0\n        gateway: 192.168.1.1\n      - type: dhcp6\n  - type: nameserver\n    address: [192.168.1.1]\n    search: [example.org]\n",
        )
        .unwrap();
        assert_eq!(
            Value::Object(m),
            json!({
                "network": {"interfaces": [{"id":"eth0","mac":"52:54:00:12:34:56","addresses":[
                    {"kind":"static","address":"192.168.1.10/24"},{"kind":"addrconf"}]}],
                    "default_route":"192.168.1.1"},
                "dns": {"nameservers":["192.168.1.1"],"search":["example.org"]}
            })
        );
    }

    #[test]
    fn linux_names_are_ids_never_link_names() {
        let m = parse(
            "t",
            "network:\n  version: 2\n  ethernets:\n    id0:\n      match: {macaddress: '52:54:00:aa:bb:cc'}\n      set-name: ens3\n      addresses: [10.0.0.5/24]\n      routes: [{to: default, via: 10.0.0.1}]\n      nameservers: {addresses: [10.0.0.1]}\n    eth1:\n      dhcp4: true\n",
        )
        .unwrap();
        let ifs = &m["network"]["interfaces"];
        assert_eq!(
            ifs[0],
            json!({"id":"id0","mac":"52:54:00:aa:bb:cc","addresses":[{"kind":"static","address":"10.0.0.5/24"}]})
        );
        assert_eq!(ifs[1], json!({"id":"eth1","addresses":[{"kind":"dhcp"}]}));
        assert!(ifs[0].get("name").is_none() && ifs[1].get("name").is_none());
        assert_eq!(m["network"]["default_route"], "10.0.0.1");
        assert_eq!(m["dns"]["nameservers"], json!(["10.0.0.1"]));
    }

    #[test]
    fn ipv6_gateways_routes_and_netmask_forms() {
        let m = parse(
            "t",
            "version: 2\nethernets:\n  id0:\n    match: {macaddress: 'fa:16:3e:00:00:01'}\n    addresses: ['2001:db8::5/64', 192.0.2.5/24]\n    gateway6: '2001:db8::1'\n    routes:\n      - {to: 10.0.0.0/8, via: 192.0.2.254, metric: 100}\n      - {to: default, via: 192.0.2.1}\n",
        )
        .unwrap();
        assert_eq!(
            m["network"],
            json!({"interfaces":[{"id":"id0","mac":"fa:16:3e:00:00:01","addresses":[
                {"kind":"static","address":"2001:db8::5/64"},{"kind":"static","address":"192.0.2.5/24"}]}],
                "default_route":"192.0.2.1","default_route6":"2001:db8::1",
                "routes":[{"destination":"10.0.0.0/8","gateway":"192.0.2.254","interface":"id0"}]})
        );
        assert_eq!(
            to_cidr("10.1.2.3/255.255.0.0", None).unwrap(),
            "10.1.2.3/16"
        );
        assert_eq!(
            to_cidr("2001:db8::9", Some("ffff:ffff:ffff:ffff::")).unwrap(),
            "2001:db8::9/64"
        );
        assert_eq!(
            to_cidr("2001:db8::9", Some("64")).unwrap(),
            "2001:db8::9/64"
        );
        assert!(to_cidr("10.0.0.1", Some("255.0.255.0")).is_err());
    }

    #[test]
    fn bonds_vlans_and_warnings() {
        let m = parse(
            "t",
            "version: 1\nconfig:\n  - {type: physical, name: eth0, mac_address: 'aa:bb:cc:00:00:01'}\n  - {type: physical, name: eth1, mac_address: 'aa:bb:cc:00:00:02'}\n  - type: bond\n    name: bond0\n    bond_interfaces: [eth0, eth1]\n    params: {bond-mode: 802.3ad, bond-xmit-hash-policy: layer3+4}\n  - type: vlan\n    name: bond0.100\n    vlan_link: bond0\n    vlan_id: 100\n    subnets: [{type: static, address: 10.100.0.2/24}]\n  - {type: bridge, name: br0, bridge_interfaces: [eth0]}\n  - {type: physical, name: eth2, mac_address: 'aa:bb:cc:00:00:03', accept-ra: true}\n",
        )
        .unwrap();
        let ifs = &m["network"]["interfaces"];
        assert_eq!(
            ifs[2],
            json!({"id":"bond0","kind":"bond","members":["eth0","eth1"],"lacp":"active","policy":"L3,L4","addresses":[]})
        );
        assert_eq!(
            ifs[3],
            json!({"id":"bond0.100","kind":"vlan","vlan_link":"bond0","vlan_id":100,
                "addresses":[{"kind":"static","address":"10.100.0.2/24"}]})
        );
        assert_eq!(
            m["network"]["warnings"],
            json!([
                "bridge br0: bridges are not configured on illumos; skipped",
                "eth2: accept-ra is not supported on illumos; ignored"
            ])
        );
    }

    #[test]
    fn type_errors_name_the_field_and_the_type() {
        let err = parse(
            "t",
            "version: 2\nethernets:\n  id0:\n    addresses: 10.0.0.1/24\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "source t: network-config: line 4: ethernets.id0.addresses must be a list, not a string"
        );
    }

    #[test]
    fn network_data_type_errors_name_the_field() {
        let e = from_network_data(
            r#"{"links":[{"id":"l0","ethernet_mac_address":"52:54:00:00:00:01"}],"networks":[{"link":"l0","type":"ipv4","ip_address":"10.0.0.2","netmask":"255.0.0.0","routes":[5]}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            NetError::WrongType {
                path: "networks[0].routes[0]".into(),
                expected: "an object",
                found: "a number".into(),
            }
        );
        assert_eq!(
            e.to_string(),
            "networks[0].routes[0] must be an object, not a number"
        );
    }

    #[test]
    fn type_errors_name_the_line() {
        let err = parse(
            "t",
            "network:\n  version: 2\n  ethernets:\n    id0:\n      dhcp4: true\n    id1:\n      addresses: 10.0.0.1/24\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "source t: network-config: line 7: ethernets.id1.addresses must be a list, not a string"
        );
        let text = "version: 1\nconfig:\n  - type: physical\n    name: eth0\n  - type: physical\n    name: eth1\n    subnets:\n      - type: dhcp\n      - type: static\n        address: [10.0.0.2]\n";
        let err = parse("t", text).unwrap_err().to_string();
        assert_eq!(
            err,
            "source t: network-config: line 10: config[1].subnets[1].address must be a string, not a list"
        );
        assert_eq!(locate(text, "config[0]", false), Some(3));
        assert_eq!(
            locate(
                "version: 2\nethernets: {id0: {addresses: x}}\n",
                "ethernets.id0.addresses",
                false
            ),
            None
        );
    }

    #[test]
    fn network_data_ipv6_netmask_and_routes() {
        let m = from_network_data(
            r#"{"links":[{"id":"tap1","type":"ovs","ethernet_mac_address":"fa:16:3e:00:00:01","mtu":1450}],
            "networks":[
              {"id":"n4","link":"tap1","type":"ipv4","ip_address":"10.1.0.5","netmask":"255.255.0.0",
               "routes":[{"network":"0.0.0.0","netmask":"0.0.0.0","gateway":"10.1.0.1"},
                         {"network":"172.16.0.0","netmask":"255.240.0.0","gateway":"10.1.0.254"}]},
              {"id":"n6","link":"tap1","type":"ipv6","ip_address":"2001:db8::5","netmask":"ffff:ffff:ffff:ffff::",
               "routes":[{"network":"::","netmask":"::","gateway":"2001:db8::1"}]}],
            "services":[{"type":"dns","address":"10.1.0.2"}]}"#,
        )
        .unwrap();
        assert_eq!(
            Value::Object(m),
            json!({"network":{"interfaces":[{"id":"tap1","mac":"fa:16:3e:00:00:01","mtu":1450,"addresses":[
                {"kind":"static","address":"10.1.0.5/16"},{"kind":"static","address":"2001:db8::5/64"}]}],
                "default_route":"10.1.0.1","default_route6":"2001:db8::1",
                "routes":[{"destination":"172.16.0.0/12","gateway":"10.1.0.254","interface":"tap1"}]},
                "dns":{"nameservers":["10.1.0.2"],"search":[]}})
        );
    }

    #[test]
    fn masks_and_versions() {
        assert_eq!(mask_to_prefix("255.255.255.0"), Some(24));
        assert_eq!(mask_to_prefix("0.0.0.0"), Some(0));
        assert_eq!(mask_to_prefix("255.0.255.0"), None);
        assert_eq!(mask_to_prefix("ffff:ffff:ffff:ff00::"), Some(56));
        let err = parse("t", "version: 3\n").unwrap_err().to_string();
        assert_eq!(
            err,
            "source t: network-config: version 3 is not supported (1 or 2)"
        );
    }
}
