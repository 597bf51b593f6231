//! cloud-init `network-config`, version 1 and version 2, translated into the `network` and
//! `dns` keys. The document may be wrapped in a top-level `network:` key.

use serde_json::{json, Map, Value};

use super::SourceError;

pub fn parse(source_name: &'static str, text: &str) -> Result<Map<String, Value>, SourceError> {
    let bad = |m: String| SourceError::malformed(source_name, format!("network-config: {m}"));
    let doc = super::parse_yaml(source_name, "network-config", text)?;
    let doc = match doc {
        Value::Null => return Ok(Map::new()),
        Value::Object(mut m) => match m.remove("network") {
            Some(Value::Object(inner)) => inner,
            Some(_) => return Err(bad("`network` must be a mapping".into())),
            None => m,
        },
        _ => return Err(bad("the document is not a mapping".into())),
    };
    match doc.get("version").and_then(Value::as_u64) {
        Some(1) => v1(&doc).map_err(bad),
        Some(2) => v2(&doc).map_err(bad),
        Some(v) => Err(bad(format!("version {v} is not supported (1 or 2)"))),
        None => Err(bad("version is missing".into())),
    }
}

#[derive(Default)]
struct Acc {
    interfaces: Vec<Value>,
    gateway: Option<String>,
    nameservers: Vec<String>,
    search: Vec<String>,
}

impl Acc {
    fn finish(self) -> Map<String, Value> {
        let mut out = Map::new();
        if !self.interfaces.is_empty() || self.gateway.is_some() {
            let mut n = json!({"interfaces": self.interfaces});
            if let Some(g) = self.gateway {
                n["default_route"] = json!(g);
            }
            out.insert("network".into(), n);
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

fn str_list(v: Option<&Value>, what: &str) -> Result<Vec<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(String::from)
                    .ok_or(format!("{what} must be strings"))
            })
            .collect(),
        Some(_) => Err(format!("{what} must be a list of strings")),
    }
}

fn get_str<'a>(m: &'a Map<String, Value>, k: &str) -> Result<Option<&'a str>, String> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{k} must be a string")),
    }
}

/// Dotted netmask to prefix length; `None` for a mask with holes.
pub fn mask_to_prefix(mask: &str) -> Option<u32> {
    let addr: std::net::Ipv4Addr = mask.parse().ok()?;
    let bits = u32::from(addr);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones)
}

fn v1(doc: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut acc = Acc::default();
    let config = doc
        .get("config")
        .and_then(Value::as_array)
        .ok_or("version 1 needs a `config` list")?;
    for (i, item) in config.iter().enumerate() {
        let m = item
            .as_object()
            .ok_or(format!("config[{i}] must be a mapping"))?;
        let at = |e: String| format!("config[{i}]: {e}");
        match get_str(m, "type").map_err(at)? {
            Some("physical") => {
                let mut iface = Map::new();
                if let Some(n) = get_str(m, "name").map_err(at)? {
                    iface.insert("name".into(), json!(n));
                }
                if let Some(mac) = get_str(m, "mac_address").map_err(at)? {
                    iface.insert("mac".into(), json!(mac));
                }
                let mut addrs = Vec::new();
                let subnets = m
                    .get("subnets")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for (j, s) in subnets.iter().enumerate() {
                    let s = s
                        .as_object()
                        .ok_or(at(format!("subnets[{j}] must be a mapping")))?;
                    let sat = |e: String| at(format!("subnets[{j}]: {e}"));
                    match get_str(s, "type").map_err(sat)? {
                        Some("dhcp") | Some("dhcp4") => addrs.push(json!({"kind":"dhcp"})),
                        Some("dhcp6") | Some("ipv6_slaac") | Some("ipv6_dhcpv6-stateless") => {
                            addrs.push(json!({"kind":"addrconf"}))
                        }
                        Some("static") | Some("static6") => {
                            let a = get_str(s, "address")
                                .map_err(sat)?
                                .ok_or(sat("address is missing".into()))?;
                            let cidr = if a.contains('/') {
                                a.to_string()
                            } else if let Some(mask) = get_str(s, "netmask").map_err(sat)? {
                                let p = mask_to_prefix(mask)
                                    .ok_or(sat(format!("netmask {mask} is not valid")))?;
                                format!("{a}/{p}")
                            } else {
                                return Err(sat("static address needs a prefix or netmask".into()));
                            };
                            addrs.push(json!({"kind":"static","address":cidr}));
                            if let Some(g) = get_str(s, "gateway").map_err(sat)? {
                                acc.gateway.get_or_insert_with(|| g.to_string());
                            }
                            acc.nameservers.extend(
                                str_list(s.get("dns_nameservers"), "dns_nameservers")
                                    .map_err(sat)?,
                            );
                            acc.search
                                .extend(str_list(s.get("dns_search"), "dns_search").map_err(sat)?);
                        }
                        Some(other) => {
                            return Err(sat(format!("subnet type {other:?} is not supported")))
                        }
                        None => return Err(sat("type is missing".into())),
                    }
                }
                iface.insert("addresses".into(), Value::Array(addrs));
                acc.interfaces.push(Value::Object(iface));
            }
            Some("nameserver") => {
                acc.nameservers
                    .extend(str_list(m.get("address"), "address").map_err(at)?);
                acc.search
                    .extend(str_list(m.get("search"), "search").map_err(at)?);
            }
            Some("route") => {
                let dest = get_str(m, "destination").map_err(at)?.unwrap_or("");
                if matches!(dest, "0.0.0.0/0" | "default" | "0.0.0.0") {
                    if let Some(g) = get_str(m, "gateway").map_err(at)? {
                        acc.gateway = Some(g.to_string());
                    }
                }
            }
            Some(other) => {
                tracing::warn!("network-config v1 type {other:?} is not supported; ignored")
            }
            None => return Err(at("type is missing".into())),
        }
    }
    Ok(acc.finish())
}

fn v2(doc: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut acc = Acc::default();
    let Some(eths) = doc.get("ethernets") else {
        return Ok(acc.finish());
    };
    let eths = eths.as_object().ok_or("ethernets must be a mapping")?;
    for (id, e) in eths {
        let at = |m: String| format!("ethernets.{id}: {m}");
        let e = e.as_object().ok_or(at("must be a mapping".into()))?;
        let mut iface = Map::new();
        let mac = match e.get("match") {
            Some(Value::Object(m)) => get_str(m, "macaddress").map_err(at)?,
            Some(_) => return Err(at("match must be a mapping".into())),
            None => None,
        };
        match (mac, get_str(e, "set-name").map_err(at)?) {
            (Some(mac), name) => {
                iface.insert("mac".into(), json!(mac));
                if let Some(n) = name {
                    iface.insert("name".into(), json!(n));
                }
            }
            (None, Some(n)) => {
                iface.insert("name".into(), json!(n));
            }
            (None, None) => {
                iface.insert("name".into(), json!(id));
            }
        }
        let mut addrs = Vec::new();
        if e.get("dhcp4").and_then(Value::as_bool) == Some(true) {
            addrs.push(json!({"kind":"dhcp"}));
        }
        if e.get("dhcp6").and_then(Value::as_bool) == Some(true) {
            addrs.push(json!({"kind":"addrconf"}));
        }
        for a in str_list(e.get("addresses"), "addresses").map_err(at)? {
            if !a.contains('/') {
                return Err(at(format!("address {a} needs a prefix length")));
            }
            addrs.push(json!({"kind":"static","address":a}));
        }
        if let Some(g) = get_str(e, "gateway4").map_err(at)? {
            acc.gateway.get_or_insert_with(|| g.to_string());
        }
        if let Some(routes) = e.get("routes").and_then(Value::as_array) {
            for r in routes {
                let Some(r) = r.as_object() else { continue };
                let to = get_str(r, "to").map_err(at)?.unwrap_or("");
                if matches!(to, "default" | "0.0.0.0/0") {
                    if let Some(via) = get_str(r, "via").map_err(at)? {
                        acc.gateway.get_or_insert_with(|| via.to_string());
                    }
                }
            }
        }
        if let Some(ns) = e.get("nameservers") {
            let ns = ns
                .as_object()
                .ok_or(at("nameservers must be a mapping".into()))?;
            acc.nameservers
                .extend(str_list(ns.get("addresses"), "addresses").map_err(at)?);
            acc.search
                .extend(str_list(ns.get("search"), "search").map_err(at)?);
        }
        iface.insert("addresses".into(), Value::Array(addrs));
        acc.interfaces.push(Value::Object(iface));
    }
    Ok(acc.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_physical_static_and_nameserver() {
        let m = parse(
            "t",
            "version: 1\nconfig:\n  - type: physical\n    name: net0\n    mac_address: '52:54:00:12:34:56'\n    subnets:\n      - type: static\n        address: 192.168.1.10\n        netmask: 255.255.255.0\n        gateway: 192.168.1.1\n      - type: dhcp6\n  - type: nameserver\n    address: [192.168.1.1]\n    search: [example.org]\n",
        )
        .unwrap();
        assert_eq!(
            Value::Object(m),
            json!({
                "network": {"interfaces": [{"name":"net0","mac":"52:54:00:12:34:56","addresses":[
                    {"kind":"static","address":"192.168.1.10/24"},{"kind":"addrconf"}]}],
                    "default_route":"192.168.1.1"},
                "dns": {"nameservers":["192.168.1.1"],"search":["example.org"]}
            })
        );
    }

    #[test]
    fn v2_ethernets_with_match_and_routes() {
        let m = parse(
            "t",
            "network:\n  version: 2\n  ethernets:\n    id0:\n      match: {macaddress: '52:54:00:aa:bb:cc'}\n      addresses: [10.0.0.5/24]\n      routes: [{to: default, via: 10.0.0.1}]\n      nameservers: {addresses: [10.0.0.1]}\n    vioif1:\n      dhcp4: true\n",
        )
        .unwrap();
        assert_eq!(m["network"]["interfaces"][0]["mac"], "52:54:00:aa:bb:cc");
        assert_eq!(
            m["network"]["interfaces"][0]["addresses"][0]["address"],
            "10.0.0.5/24"
        );
        assert_eq!(
            m["network"]["interfaces"][1],
            json!({"name":"vioif1","addresses":[{"kind":"dhcp"}]})
        );
        assert_eq!(m["network"]["default_route"], "10.0.0.1");
        assert_eq!(m["dns"]["nameservers"], json!(["10.0.0.1"]));
    }

    #[test]
    fn masks_and_versions() {
        assert_eq!(mask_to_prefix("255.255.255.0"), Some(24));
        assert_eq!(mask_to_prefix("0.0.0.0"), Some(0));
        assert_eq!(mask_to_prefix("255.0.255.0"), None);
        let err = parse("t", "version: 3\n").unwrap_err().to_string();
        assert_eq!(
            err,
            "source t: network-config: version 3 is not supported (1 or 2)"
        );
    }
}
