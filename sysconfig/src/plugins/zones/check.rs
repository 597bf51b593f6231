//! Checks a zone description before anything runs. Every message names the field as
//! `zones[I].FIELD` (the key, the entry and the field) and the value it refuses.
//!
//! The rules are illumos's own: zone names as `zonecfg_validate_zonename()` takes them
//! (shorter than `ZONENAME_MAX`, 64, so at most 63), link names as
//! `dladm_valid_linkname()` does, dataset names as ZFS's, and the `net` rules zonecfg's
//! `verify` applies per IP type. The values also go into one zonecfg command line, so
//! they are held to characters zonecfg's lexer reads as plain words.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::plugins::PluginError;
use crate::schema::{IpType, Zone, ZoneNet};

use super::text::zonepath_of;

/// Why `name` cannot be a zone name, if it cannot.
pub fn zone_name_problem(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() {
        Some("is empty")
    } else if name == "global" {
        Some("is the global zone's name")
    } else if name.starts_with("SUNW") {
        Some("starts with SUNW, which is reserved")
    } else if name.len() > 63 {
        Some("is longer than 63 characters")
    } else if !first_ok {
        Some("must start with a letter or digit")
    } else if !chars.all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        Some("may hold only letters, digits, '-', '_' and '.'")
    } else {
        None
    }
}

/// A datalink name: at most 31 characters of letters, digits, `_` and `.`, not starting
/// with a digit and ending with one (`vioif0`, `web0`).
fn link_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() < 32
        && !b[0].is_ascii_digit()
        && b[b.len() - 1].is_ascii_digit()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
}

/// A ZFS file system name: `/`-separated components of letters, digits, `_-:.`, the pool
/// name starting with a letter, no snapshot or bookmark part.
fn dataset_ok(s: &str) -> bool {
    let comps: Vec<&str> = s.split('/').collect();
    s.len() < 256
        && comps.iter().all(|c| {
            !c.is_empty()
                && *c != "."
                && *c != ".."
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "_-:.".contains(ch))
        })
        && comps[0].starts_with(|c: char| c.is_ascii_alphabetic())
}

/// An absolute path of plain characters, in the form zonecfg stores it (no `//`, no `.`
/// or `..`, no trailing `/`), so it compares equal to what zonecfg prints back.
fn path_ok(s: &str) -> bool {
    s.len() < 1024
        && s.starts_with('/')
        && s.len() > 1
        && !s.ends_with('/')
        && s[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+/".contains(c))
}

/// `ADDRESS[/PREFIX]` as zonecfg takes it: IPv4 with an optional prefix length up to 32,
/// IPv6 with a required one up to 128. (zonecfg also takes a host name for `address`;
/// names are refused here, because resolving them on first boot is not reliable.)
fn address_problem(s: &str) -> Option<&'static str> {
    let (ip, prefix) = match s.split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (s, None),
    };
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return Some("is not an IP address");
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match prefix {
        None if ip.is_ipv6() => Some("needs a /PREFIX (zonecfg requires one for IPv6)"),
        None => None,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max => None,
            _ => Some("has a bad prefix length"),
        },
    }
}

fn net_problems(ip_type: IpType, n: &ZoneNet, at: &str, out: &mut Vec<String>) {
    if !link_ok(&n.physical) {
        out.push(format!(
            "{at}.physical: {:?} is not a link name (letters, digits, '_', '.', at most 31, ending in a digit)",
            n.physical
        ));
    }
    match ip_type {
        IpType::Exclusive => {
            if let Some(a) = &n.address {
                out.push(format!(
                    "{at}.address: {a:?}: an exclusive-IP zone configures its own addresses (use allowed_address to pin one)"
                ));
            }
        }
        IpType::Shared => {
            if n.address.is_none() {
                out.push(format!(
                    "{at}.address: missing: a shared-IP zone's net needs its address"
                ));
            }
            if let Some(a) = &n.allowed_address {
                out.push(format!(
                    "{at}.allowed_address: {a:?}: only an exclusive-IP zone takes allowed_address"
                ));
            }
            if let Some(g) = &n.global_nic {
                out.push(format!(
                    "{at}.global_nic: {g:?}: only an exclusive-IP zone takes global_nic"
                ));
            }
        }
    }
    for (field, v) in [
        ("address", &n.address),
        ("allowed_address", &n.allowed_address),
    ] {
        if let Some(v) = v {
            if let Some(why) = address_problem(v) {
                out.push(format!("{at}.{field}: {v:?} {why}"));
            }
        }
    }
    if let Some(r) = &n.defrouter {
        if r.parse::<IpAddr>().is_err() {
            out.push(format!(
                "{at}.defrouter: {r:?} is not an IP address (no /PREFIX)"
            ));
        }
    }
    if let Some(g) = &n.global_nic {
        if !link_ok(g) {
            out.push(format!("{at}.global_nic: {g:?} is not a link name"));
        }
    }
}

fn zone_problems(i: usize, z: &Zone, out: &mut Vec<String>) {
    let at = format!("zones[{i}]");
    if let Some(why) = zone_name_problem(&z.name) {
        out.push(format!("{at}.name: {:?} {why}", z.name));
    }
    let brand_ok = z.brand.len() <= 64
        && z.brand.starts_with(|c: char| c.is_ascii_alphanumeric())
        && z.brand
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !brand_ok {
        out.push(format!(
            "{at}.brand: {:?} is not a brand name (letters, digits, '-', '_', '.')",
            z.brand
        ));
    }
    if let Some(p) = &z.zonepath {
        if !path_ok(p) || p == "/" {
            out.push(format!(
                "{at}.zonepath: {p:?} is not an absolute path of letters, digits and '-_.+/' (not /, no trailing /)"
            ));
        }
    }
    for (j, n) in z.networks.iter().enumerate() {
        net_problems(z.ip_type, n, &format!("{at}.networks[{j}]"), out);
    }
    if z.ip_type == IpType::Exclusive {
        // zonecfg verify: a defrouter on a link needs an allowed-address on that link
        // (on any of its net resources).
        let mut links: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
        for n in &z.networks {
            let e = links.entry(n.physical.as_str()).or_default();
            e.0 |= n.allowed_address.is_some();
            e.1 |= n.defrouter.is_some();
        }
        for (link, (has_addr, has_router)) in links {
            if has_router && !has_addr {
                out.push(format!(
                    "{at}.networks: defrouter on {link:?} needs an allowed_address on {link:?} (zonecfg refuses it otherwise)"
                ));
            }
        }
    }
    for (j, d) in z.datasets.iter().enumerate() {
        if !dataset_ok(d) {
            out.push(format!(
                "{at}.datasets[{j}]: {d:?} is not a ZFS file system name"
            ));
        }
        if z.datasets[..j].contains(d) {
            out.push(format!("{at}.datasets[{j}]: {d:?} is given twice"));
        }
    }
    if let Some(img) = &z.image {
        if !img.starts_with('/') || img.chars().any(char::is_control) {
            out.push(format!("{at}.image: {img:?} is not an absolute path"));
        }
        if z.install_args.iter().any(|a| a == "-a") {
            out.push(format!(
                "{at}.install_args: \"-a\" given with image: the image is the -a archive already"
            ));
        }
    }
    for (j, a) in z.install_args.iter().enumerate() {
        if a.is_empty() || a.chars().any(char::is_control) {
            out.push(format!(
                "{at}.install_args[{j}]: {a:?} is empty or has control characters"
            ));
        }
    }
}

/// Every problem with the description, all at once; `Ok` when there is none.
pub fn check(zones: &[Zone]) -> Result<(), PluginError> {
    let mut out = Vec::new();
    for (i, z) in zones.iter().enumerate() {
        zone_problems(i, z, &mut out);
        if let Some(j) = zones[..i].iter().position(|o| o.name == z.name) {
            out.push(format!(
                "zones[{i}].name: {:?} is also zones[{j}]'s name",
                z.name
            ));
        }
        let path = zonepath_of(z);
        if let Some(j) = zones[..i].iter().position(|o| zonepath_of(o) == path) {
            out.push(format!(
                "zones[{i}].zonepath: {path:?} is also zones[{j}]'s zonepath"
            ));
        }
    }
    if out.is_empty() {
        Ok(())
    } else {
        Err(PluginError::Problems(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_json(v: serde_json::Value) -> Result<(), String> {
        let zones: Vec<Zone> = serde_json::from_value(v).map_err(|e| e.to_string())?;
        check(&zones).map_err(|e| e.to_string())
    }

    #[test]
    fn zone_names_follow_libzonecfg() {
        for ok in [
            "web",
            "0db",
            "a.b-c_d",
            &"x".repeat(63),
            "Global",
            "sunwise",
        ] {
            assert_eq!(zone_name_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("", "is empty"),
            ("global", "is the global zone's name"),
            ("SUNWdefault", "starts with SUNW, which is reserved"),
            (&"x".repeat(64), "is longer than 63 characters"),
            ("-web", "must start with a letter or digit"),
            (".web", "must start with a letter or digit"),
            (
                "web zone",
                "may hold only letters, digits, '-', '_' and '.'",
            ),
            (
                "web;reboot",
                "may hold only letters, digits, '-', '_' and '.'",
            ),
            ("wéb", "may hold only letters, digits, '-', '_' and '.'"),
        ] {
            assert_eq!(zone_name_problem(bad), Some(why), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_field_and_the_value() {
        let err = check_json(json!([{"name": "SUNWx"}])).unwrap_err();
        assert_eq!(
            err,
            "zones[0].name: \"SUNWx\" starts with SUNW, which is reserved"
        );
        let err = check_json(json!([
            {"name": "a", "zonepath": "zones/a"},
            {"name": "b", "brand": "ip kg", "networks": [
                {"physical": "0bad"},
                {"physical": "web0", "address": "10.0.0.5/24"},
                {"physical": "web1", "defrouter": "10.0.1.1"}
            ]},
            {"name": "c", "ip_type": "shared", "networks": [
                {"physical": "vioif0", "allowed_address": "10.0.0.7/33", "global_nic": "vioif1"}
            ], "datasets": ["tank/c", "tank/c", "/tank", "tank@snap"]},
            {"name": "a", "zonepath": "/zones/b", "image": "zone.tar", "install_args": ["-a", ""]}
        ]))
        .unwrap_err();
        let got: Vec<&str> = err.split("; ").collect();
        assert_eq!(
            got,
            [
                "zones[0].zonepath: \"zones/a\" is not an absolute path of letters, digits and '-_.+/' (not /, no trailing /)",
                "zones[1].brand: \"ip kg\" is not a brand name (letters, digits, '-', '_', '.')",
                "zones[1].networks[0].physical: \"0bad\" is not a link name (letters, digits, '_', '.', at most 31, ending in a digit)",
                "zones[1].networks[1].address: \"10.0.0.5/24\": an exclusive-IP zone configures its own addresses (use allowed_address to pin one)",
                "zones[1].networks: defrouter on \"web1\" needs an allowed_address on \"web1\" (zonecfg refuses it otherwise)",
                "zones[2].networks[0].address: missing: a shared-IP zone's net needs its address",
                "zones[2].networks[0].allowed_address: \"10.0.0.7/33\": only an exclusive-IP zone takes allowed_address",
                "zones[2].networks[0].global_nic: \"vioif1\": only an exclusive-IP zone takes global_nic",
                "zones[2].networks[0].allowed_address: \"10.0.0.7/33\" has a bad prefix length",
                "zones[2].datasets[1]: \"tank/c\" is given twice",
                "zones[2].datasets[2]: \"/tank\" is not a ZFS file system name",
                "zones[2].datasets[3]: \"tank@snap\" is not a ZFS file system name",
                "zones[3].image: \"zone.tar\" is not an absolute path",
                "zones[3].install_args: \"-a\" given with image: the image is the -a archive already",
                "zones[3].install_args[1]: \"\" is empty or has control characters",
                "zones[3].name: \"a\" is also zones[0]'s name",
                "zones[3].zonepath: \"/zones/b\" is also zones[1]'s zonepath",
            ]
        );
    }

    #[test]
    fn addresses_routers_and_paths() {
        assert_eq!(address_problem("10.0.0.5"), None);
        assert_eq!(address_problem("10.0.0.5/24"), None);
        assert_eq!(address_problem("fd00::5/64"), None);
        assert_eq!(
            address_problem("fd00::5"),
            Some("needs a /PREFIX (zonecfg requires one for IPv6)")
        );
        assert_eq!(address_problem("web.example"), Some("is not an IP address"));
        assert_eq!(
            address_problem("fd00::5/129"),
            Some("has a bad prefix length")
        );
        let err = check_json(json!([{"name": "r", "networks": [
            {"physical": "r0", "allowed_address": "10.0.0.2/24", "defrouter": "10.0.0.1/24"}
        ]}]))
        .unwrap_err();
        assert_eq!(
            err,
            "zones[0].networks[0].defrouter: \"10.0.0.1/24\" is not an IP address (no /PREFIX)"
        );
        for bad in [
            "/",
            "/zones/",
            "/zones//a",
            "/zones/../etc",
            "/zones/a b",
            "/zones/a;b",
        ] {
            assert!(!path_ok(bad), "{bad}");
        }
        assert!(path_ok("/zones/web-1.example"));
        assert!(check_json(json!([
            {"name": "web", "zonepath": "/export/zones/web", "networks": [
                {"physical": "web0", "allowed_address": "10.0.0.5/24", "defrouter": "10.0.0.1"},
                {"physical": "web0", "allowed_address": "fd00::5/64"}
            ], "datasets": ["tank/web/data"], "image": "/var/tmp/web.zone.tar"},
            {"name": "old", "ip_type": "shared", "networks": [
                {"physical": "vioif0", "address": "192.168.1.9/24", "defrouter": "192.168.1.1"}
            ]}
        ]))
        .is_ok());
    }

    #[test]
    fn unknown_fields_are_named_by_serde() {
        let err = check_json(json!([{"name": "a", "brnad": "ipkg"}])).unwrap_err();
        assert!(err.contains("unknown field `brnad`"), "{err}");
        let err = check_json(json!([{"name": "a", "ip_type": "excl"}])).unwrap_err();
        assert!(err.contains("unknown variant `excl`"), "{err}");
        let err = check_json(json!([{"name": "a", "networks": [{"physical": "a0", "mac": "x"}]}]))
            .unwrap_err();
        assert!(err.contains("unknown field `mac`"), "{err}");
    }
}
