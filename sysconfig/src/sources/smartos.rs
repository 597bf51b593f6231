//! SmartOS / Triton metadata through `mdata-get` (exit 1 means "no such key").

use std::path::Path;

use runner::{Cmd, Runner};
use serde_json::{json, Map, Value};

use super::{cloudconfig, Found, SourceError};

const NAME: &str = "smartos";

fn get(runner: &dyn Runner, prog: &Path, key: &str) -> Result<Option<String>, SourceError> {
    let cmd = Cmd::new(prog)
        .arg(key)
        .timeout(std::time::Duration::from_secs(30));
    let out = runner.output(&cmd).map_err(|e| SourceError::Unavailable {
        source_name: NAME,
        message: e.to_string(),
    })?;
    match out.code {
        Some(0) => Ok(Some(out.stdout_str())),
        Some(1) => Ok(None),
        _ => Err(SourceError::Unavailable {
            source_name: NAME,
            message: format!(
                "mdata-get {key}: {} {}",
                out.status_text(),
                out.stderr_tail(2)
            ),
        }),
    }
}

pub fn read(runner: &dyn Runner, prog: &Path) -> Result<Option<Found>, SourceError> {
    if !prog.exists() {
        return Ok(None);
    }
    let Some(uuid) = get(runner, prog, "sdc:uuid")? else {
        return Ok(None);
    };
    let bad = |m: String| SourceError::malformed(NAME, m);
    let mut desired = Map::new();
    if let Some(h) = get(runner, prog, "sdc:hostname")? {
        let h = h.trim();
        if !h.is_empty() {
            desired.insert("hostname".into(), json!(h));
        }
    }
    if let Some(r) = get(runner, prog, "sdc:resolvers")? {
        let v: Vec<String> =
            serde_json::from_str(&r).map_err(|e| bad(format!("sdc:resolvers: {e}")))?;
        desired.insert("dns".into(), json!({"nameservers": v}));
    }
    if let Some(n) = get(runner, prog, "sdc:nics")? {
        desired.insert(
            "network".into(),
            nics(&n).map_err(|e| bad(format!("sdc:nics: {e}")))?,
        );
    }
    let keys: Vec<String> = get(runner, prog, "root_authorized_keys")?
        .map(|k| {
            k.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let ud = get(runner, prog, "user-data")?;
    let (desired, warnings) =
        cloudconfig::combine(NAME, ud.as_deref().map(str::as_bytes), &keys, desired)?;
    Ok(Some(Found {
        instance_id: Some(uuid.trim().to_string()),
        desired,
        warnings,
    }))
}

fn nics(text: &str) -> Result<Value, String> {
    let list: Vec<Value> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut interfaces = Vec::new();
    let mut gateway = None;
    for n in &list {
        let mac = n
            .get("mac")
            .and_then(Value::as_str)
            .ok_or("a NIC has no mac")?;
        let ips: Vec<String> = match (n.get("ips"), n.get("ip")) {
            (Some(Value::Array(a)), _) => a
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            (_, Some(Value::String(ip))) => {
                let mask = n
                    .get("netmask")
                    .and_then(Value::as_str)
                    .unwrap_or("255.255.255.0");
                let p = super::netconfig::mask_to_prefix(mask)
                    .ok_or(format!("netmask {mask} is not valid"))?;
                vec![format!("{ip}/{p}")]
            }
            _ => vec![],
        };
        let addrs: Vec<Value> = ips
            .iter()
            .map(|ip| {
                if ip == "dhcp" {
                    json!({"kind":"dhcp"})
                } else if ip == "addrconf" {
                    json!({"kind":"addrconf"})
                } else {
                    json!({"kind":"static","address":ip})
                }
            })
            .collect();
        if n.get("primary").and_then(Value::as_bool) == Some(true) {
            gateway = n.get("gateway").and_then(Value::as_str).map(String::from);
        }
        let mut iface = json!({"mac": mac, "addresses": addrs});
        if let Some(name) = n.get("interface").and_then(Value::as_str) {
            iface["name"] = json!(name);
        }
        interfaces.push(iface);
    }
    let mut out = json!({"interfaces": interfaces});
    if let Some(g) = gateway {
        out["default_route"] = json!(g);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runner::{Output, Recorder};

    #[test]
    fn keys_are_fetched_with_mdata_get_and_missing_keys_are_skipped() {
        let t = tempfile::tempdir().unwrap();
        let prog = t.path().join("mdata-get");
        std::fs::write(&prog, "").unwrap();
        let p = prog.display().to_string();
        let rec = Recorder::new();
        rec.on(&format!("{p} sdc:uuid"), Output::ok("abc-123\n"))
            .on(&format!("{p} sdc:hostname"), Output::ok("zone1\n"))
            .on(&format!("{p} sdc:resolvers"), Output::ok("[\"8.8.8.8\"]"))
            .on(&format!("{p} sdc:nics"), Output::ok(r#"[{"interface":"net0","mac":"90:b8:d0:1:2:3","ip":"10.0.0.9","netmask":"255.255.255.0","gateway":"10.0.0.1","primary":true}]"#))
            .on(&format!("{p} root_authorized_keys"), Output::failed(1, "No metadata"))
            .on(&format!("{p} user-data"), Output::failed(1, ""));
        let f = read(&rec, &prog).unwrap().unwrap();
        assert_eq!(f.instance_id.as_deref(), Some("abc-123"));
        assert_eq!(
            Value::Object(f.desired),
            json!({"hostname":"zone1","dns":{"nameservers":["8.8.8.8"]},
                "network":{"interfaces":[{"name":"net0","mac":"90:b8:d0:1:2:3","addresses":[{"kind":"static","address":"10.0.0.9/24"}]}],"default_route":"10.0.0.1"}})
        );
        let lines = rec.lines();
        assert_eq!(lines[0], format!("{p} sdc:uuid"));
        assert_eq!(lines.len(), 6);
    }

    #[test]
    fn malformed_resolvers_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let prog = t.path().join("mdata-get");
        std::fs::write(&prog, "").unwrap();
        let p = prog.display().to_string();
        let rec = Recorder::new();
        rec.on(&format!("{p} sdc:uuid"), Output::ok("u\n"))
            .on(&format!("{p} sdc:hostname"), Output::failed(1, ""))
            .on(&format!("{p} sdc:resolvers"), Output::ok("not json"));
        let err = read(&rec, &prog).unwrap_err().to_string();
        assert!(err.starts_with("source smartos: sdc:resolvers:"), "{err}");
    }
}
