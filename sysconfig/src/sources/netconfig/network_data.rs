//! OpenStack `network_data.json`, read by [`from_network_data`](super::from_network_data).

use serde_json::{json, Map, Value};

use super::addr::{route_dest, static_addr, to_cidr};
use super::error::{missing, not_number, wrong, wrong_at};
use super::fields::{as_u64, get_list, get_str, kind_of, str_list};
use super::{bond_params, Acc, NetError};

/// `network_data.json`: `links` (phy, bond, vlan), `networks` (ipv4, ipv6, ipv4_dhcp,
/// ipv6_dhcp, ipv6_slaac, ipv6_dhcpv6-stateless/-stateful) with their routes, and `dns`
/// `services`.
pub(super) fn network_data(v: &Value, acc: &mut Acc) -> Result<(), NetError> {
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
    use super::super::from_network_data;
    use super::*;

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
}
