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

use serde_json::{json, Map, Value};

use super::{Malformed, SourceError};

mod addr;
mod error;
mod fields;
mod network_data;
mod v1;
mod v2;

pub use addr::{mask_to_prefix, to_cidr};
pub use error::{AddrError, NetError};
use fields::{as_u64, kind_of, scalar_text};
use network_data::network_data;
use v1::v1;
use v2::v2;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
