//! Network-config version 1: a `config` list of physical, bond, vlan, nameserver and
//! route entries.

use serde_json::{json, Map, Value};

use super::addr::{is_v6, route_dest, static_addr, to_cidr};
use super::error::{missing, not_number, wrong, wrong_at};
use super::fields::{as_u64, get_list, get_map, get_str, kind_of, str_list};
use super::{bond_params, Acc, NetError};

/// Keys a v1 entry may have that need no translation on illumos or cannot be expressed;
/// the second list is reported.
const V1_QUIET: &[&str] = &["type", "name", "mac_address", "subnets", "mtu"];

pub(super) fn v1(doc: &Map<String, Value>, acc: &mut Acc) -> Result<(), NetError> {
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

#[cfg(test)]
mod tests {
    use super::super::parse;
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
}
