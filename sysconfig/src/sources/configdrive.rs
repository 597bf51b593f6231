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
    from_volume(&mut vol)
        .map(Some)
        .map_err(|e| e.within(path.display().to_string()))
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
            super::netconfig::from_network_data(n).map_err(|error| SourceError::Malformed {
                source_name: NAME,
                error: super::Malformed::In {
                    path: "network_data.json".into(),
                    error: Box::new(super::Malformed::Network { line: None, error }),
                },
            })?,
        );
    }
    let (desired, warnings) = cloudconfig::combine(NAME, user_data, &keys, desired)?;
    Ok(Found {
        instance_id: s("uuid"),
        desired,
        warnings,
    })
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
                "network":{"interfaces":[{"id":"tap1","mac":"fa:16:3e:00:00:01","addresses":[{"kind":"static","address":"10.1.0.5/16"}]}],"default_route":"10.1.0.1"},
                "dns":{"nameservers":["10.1.0.2"],"search":[]}})
        );
    }

    #[test]
    fn an_ipv6_netmask_does_not_stop_the_run() {
        // Nova writes IPv6 netmasks in network_data.json as addresses.
        let f = parse(
            r#"{"uuid":"u-2"}"#,
            None,
            Some(r#"{"links":[{"id":"tap1","type":"ovs","ethernet_mac_address":"fa:16:3e:00:00:02"}],
                "networks":[{"link":"tap1","type":"ipv6","ip_address":"2001:db8::5","netmask":"ffff:ffff:ffff:ffff::",
                "routes":[{"network":"::","netmask":"::","gateway":"2001:db8::1"}]}]}"#),
        )
        .unwrap();
        assert_eq!(
            f.desired["network"],
            json!({"interfaces":[{"id":"tap1","mac":"fa:16:3e:00:00:02","addresses":[{"kind":"static","address":"2001:db8::5/64"}]}],
                "default_route6":"2001:db8::1"})
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
