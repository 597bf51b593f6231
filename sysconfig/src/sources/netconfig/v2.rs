//! Network-config version 2 (netplan style): `ethernets`, `bonds` and `vlans`.

use serde_json::{json, Map, Value};

use super::addr::{is_v6, route_dest, static_addr, to_cidr};
use super::error::{missing, not_number, wrong, wrong_at};
use super::fields::{as_u64, get_bool, get_list, get_map, get_str, kind_of, str_list};
use super::{bond_params, Acc, NetError};

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

pub(super) fn v2(doc: &Map<String, Value>, acc: &mut Acc) -> Result<(), NetError> {
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

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

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
}
