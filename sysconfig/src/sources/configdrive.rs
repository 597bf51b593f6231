//! OpenStack config drive: a volume labelled `config-2` holding
//! `openstack/latest/meta_data.json`, `user_data` and `network_data.json`.

use std::path::PathBuf;

use serde_json::{json, Map, Value};

use super::volume::{find_labelled, ReadSeek, Volume};
use super::{cloudconfig, Found, SourceError};

const NAME: &str = "configdrive";

pub fn read(devices: &[PathBuf]) -> Result<Option<Found>, SourceError> {
    let found = find_labelled(devices, "config-2")
        .map_err(|e| SourceError::malformed(NAME, e.to_string()))?;
    let Some((path, mut vol)) = found else {
        return Ok(None);
    };
    tracing::info!("source configdrive: volume {}", path.display());
    from_volume(&mut vol).map(Some).map_err(|e| match e {
        SourceError::Malformed { message, .. } => {
            SourceError::malformed(NAME, format!("{}: {message}", path.display()))
        }
        other => other,
    })
}

pub fn from_volume<R: ReadSeek>(vol: &mut Volume<R>) -> Result<Found, SourceError> {
    let mut bytes = |n: &str| -> Result<Option<Vec<u8>>, SourceError> {
        vol.read(&format!("openstack/latest/{n}"))
            .map_err(|e| SourceError::malformed(NAME, e.to_string()))
    };
    let user = bytes("user_data")?;
    let mut text = |n: &str| -> Result<Option<String>, SourceError> {
        bytes(n).map(|o| o.map(|b| String::from_utf8_lossy(&b).into_owned()))
    };
    let meta = text("meta_data.json")?.ok_or_else(|| {
        SourceError::malformed(NAME, "openstack/latest/meta_data.json is missing")
    })?;
    let net = text("network_data.json")?;
    parse(&meta, user.as_deref(), net.as_deref())
}

pub fn parse(
    meta: &str,
    user_data: Option<&[u8]>,
    network_data: Option<&str>,
) -> Result<Found, SourceError> {
    let bad = |m: String| SourceError::malformed(NAME, m);
    let meta: Value =
        serde_json::from_str(meta).map_err(|e| bad(format!("meta_data.json: {e}")))?;
    let meta = meta
        .as_object()
        .ok_or_else(|| bad("meta_data.json is not an object".into()))?;
    let s = |k: &str| meta.get(k).and_then(Value::as_str).map(String::from);
    let mut desired = Map::new();
    if let Some(h) = s("hostname") {
        desired.insert("hostname".into(), json!(h.split('.').next().unwrap_or(&h)));
    }
    // cloud-init's DataSourceOpenStack: `public_keys` through normalize_pubkey_data.
    let keys = super::cloudconfig::normalize_pubkeys(meta.get("public_keys"));
    if let Some(n) = network_data {
        super::merge_under(
            &mut desired,
            network(n).map_err(|m| bad(format!("network_data.json: {m}")))?,
        );
    }
    let (desired, warnings) = cloudconfig::combine(NAME, user_data, &keys, desired)?;
    Ok(Found {
        instance_id: s("uuid"),
        desired,
        warnings,
    })
}

fn network(text: &str) -> Result<Map<String, Value>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let links = v
        .get("links")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let networks = v
        .get("networks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut interfaces = Vec::new();
    let mut gateway = None;
    for l in &links {
        let id = l.get("id").and_then(Value::as_str).unwrap_or_default();
        let mac = l
            .get("ethernet_mac_address")
            .and_then(Value::as_str)
            .ok_or("a link has no ethernet_mac_address")?;
        let mut addrs = Vec::new();
        for n in networks
            .iter()
            .filter(|n| n.get("link").and_then(Value::as_str) == Some(id))
        {
            match n.get("type").and_then(Value::as_str) {
                Some("ipv4_dhcp") => addrs.push(json!({"kind":"dhcp"})),
                Some("ipv6_slaac") | Some("ipv6_dhcp") => addrs.push(json!({"kind":"addrconf"})),
                Some("ipv4") | Some("ipv6") => {
                    let a = n
                        .get("ip_address")
                        .and_then(Value::as_str)
                        .ok_or("a static network has no ip_address")?;
                    let cidr = match n.get("netmask").and_then(Value::as_str) {
                        _ if a.contains('/') => a.to_string(),
                        Some(m) => format!(
                            "{a}/{}",
                            super::netconfig::mask_to_prefix(m)
                                .ok_or(format!("netmask {m} is not valid"))?
                        ),
                        None => return Err(format!("{a} has no netmask")),
                    };
                    addrs.push(json!({"kind":"static","address":cidr}));
                    for r in n
                        .get("routes")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if r.get("network").and_then(Value::as_str) == Some("0.0.0.0") {
                            gateway = gateway
                                .or(r.get("gateway").and_then(Value::as_str).map(String::from));
                        }
                    }
                }
                other => tracing::warn!("config drive network type {other:?} ignored"),
            }
        }
        interfaces.push(json!({"mac": mac, "addresses": addrs}));
    }
    let mut out = Map::new();
    if !interfaces.is_empty() {
        let mut n = json!({"interfaces": interfaces});
        if let Some(g) = gateway {
            n["default_route"] = json!(g);
        }
        out.insert("network".into(), n);
    }
    let dns: Vec<&str> = v
        .get("services")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|s| s.get("type").and_then(Value::as_str) == Some("dns"))
        .filter_map(|s| s.get("address").and_then(Value::as_str))
        .collect();
    if !dns.is_empty() {
        out.insert("dns".into(), json!({"nameservers": dns}));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_and_network_data_translate() {
        let f = parse(
            r#"{"uuid":"u-1","hostname":"os1.novalocal","public_keys":{"k":"ssh-ed25519 AAA k"}}"#,
            None,
            Some(r#"{"links":[{"id":"tap1","ethernet_mac_address":"fa:16:3e:00:00:01"}],
                "networks":[{"link":"tap1","type":"ipv4","ip_address":"10.1.0.5","netmask":"255.255.0.0",
                "routes":[{"network":"0.0.0.0","netmask":"0.0.0.0","gateway":"10.1.0.1"}]}],
                "services":[{"type":"dns","address":"10.1.0.2"}]}"#),
        )
        .unwrap();
        assert_eq!(f.instance_id.as_deref(), Some("u-1"));
        assert_eq!(
            Value::Object(f.desired),
            json!({"hostname":"os1","users":[{"name":"root","ssh_authorized_keys":["ssh-ed25519 AAA k"]}],
                "network":{"interfaces":[{"mac":"fa:16:3e:00:00:01","addresses":[{"kind":"static","address":"10.1.0.5/16"}]}],"default_route":"10.1.0.1"},
                "dns":{"nameservers":["10.1.0.2"]}})
        );
    }

    #[test]
    fn malformed_meta_data_json_is_an_error() {
        let err = parse("{", None, None).unwrap_err().to_string();
        assert!(
            err.starts_with("source configdrive: meta_data.json:"),
            "{err}"
        );
    }
}
