//! SmartOS / Triton metadata through `mdata-get KEY`, with the keys and meanings of
//! cloud-init's DataSourceSmartOS: `sdc:uuid` (instance id), `hostname` (else
//! `sdc:hostname`), `sdc:dns_domain` (DNS search domain), `sdc:resolvers`, `sdc:nics`,
//! `sdc:routes`, `root_authorized_keys` and `cloud-init:user-data` (cloud-config). The
//! legacy `user-data` key is not cloud-config: cloud-init only copies it to
//! /var/db/mdata-user-data for the user-script, so it is not read here.
//!
//! mdata-get's exit status (mdata-client, `mdata_exit_codes`): 0 success, 1 no such key
//! (`No metadata for 'KEY'`), 2 error (the metadata protocol could not start or the host
//! answered with an error), 3 usage, 10 try again. A missing key is absent; an error on
//! `sdc:uuid` means there is no SmartOS metadata service here (the source finds nothing),
//! and an error on another key is logged and that key taken as absent, as cloud-init's
//! client returns nothing for any answer but SUCCESS.

use std::path::Path;

use runner::{Cmd, Runner};
use serde_json::{json, Map, Value};

use super::{cloudconfig, Found, SourceError};

const NAME: &str = "smartos";

enum Got {
    Value(String),
    Absent,
    Error(String),
}

fn get_raw(runner: &dyn Runner, prog: &Path, key: &str) -> Result<Got, SourceError> {
    let cmd = Cmd::new(prog)
        .arg(key)
        .timeout(std::time::Duration::from_secs(30));
    let out = runner.output(&cmd).map_err(|e| SourceError::Unavailable {
        source_name: NAME,
        message: e.to_string(),
    })?;
    match out.code {
        Some(0) => Ok(Got::Value(out.stdout_str())),
        Some(1) => Ok(Got::Absent),
        Some(2) => Ok(Got::Error(out.stderr_tail(2))),
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

fn get(runner: &dyn Runner, prog: &Path, key: &str) -> Result<Option<String>, SourceError> {
    Ok(match get_raw(runner, prog, key)? {
        Got::Value(v) => Some(v),
        Got::Absent => None,
        Got::Error(e) => {
            tracing::warn!("source smartos: mdata-get {key} failed ({e}); taken as absent");
            None
        }
    })
}

pub fn read(runner: &dyn Runner, prog: &Path) -> Result<Option<Found>, SourceError> {
    if !prog.exists() {
        return Ok(None);
    }
    let uuid = match get_raw(runner, prog, "sdc:uuid")? {
        Got::Value(u) => u,
        Got::Absent => return Ok(None),
        Got::Error(e) => {
            tracing::info!("source smartos: no metadata service ({e})");
            return Ok(None);
        }
    };
    let bad = |m: String| SourceError::malformed(NAME, m);
    let mut desired = Map::new();
    let nonempty = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let host = match nonempty(get(runner, prog, "hostname")?) {
        Some(h) => Some(h),
        None => nonempty(get(runner, prog, "sdc:hostname")?),
    };
    if let Some(h) = host {
        // The host name may be qualified with the domain (RFC 2132 3.14).
        desired.insert("hostname".into(), json!(h.split('.').next().unwrap_or(&h)));
    }
    let mut dns = Map::new();
    if let Some(d) = nonempty(get(runner, prog, "sdc:dns_domain")?) {
        dns.insert("search".into(), json!([d]));
    }
    if let Some(r) = get(runner, prog, "sdc:resolvers")? {
        let v: Vec<String> =
            serde_json::from_str(&r).map_err(|e| bad(format!("sdc:resolvers: {e}")))?;
        dns.insert("nameservers".into(), json!(v));
    }
    if !dns.is_empty() {
        desired.insert("dns".into(), Value::Object(dns));
    }
    let routes = match get(runner, prog, "sdc:routes")? {
        Some(r) => routes(&r).map_err(|e| in_key("sdc:routes", e))?,
        None => vec![],
    };
    if let Some(n) = get(runner, prog, "sdc:nics")? {
        let mut net = nics(&n).map_err(|e| in_key("sdc:nics", e))?;
        if !routes.is_empty() {
            net["routes"] = Value::Array(routes);
        }
        desired.insert("network".into(), net);
    } else if !routes.is_empty() {
        desired.insert("network".into(), json!({"routes": routes}));
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
    let ud = get(runner, prog, "cloud-init:user-data")?;
    let (desired, warnings) =
        cloudconfig::combine(NAME, ud.as_deref().map(str::as_bytes), &keys, desired)?;
    Ok(Some(Found {
        instance_id: Some(uuid.trim().to_string()),
        desired,
        warnings,
    }))
}

/// What is wrong in `sdc:routes` or `sdc:nics` (JSON lists; `index` is the entry).
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("[{index}].{key} must be a string")]
    NotAString { index: usize, key: &'static str },
    #[error("[{index}] has no mac")]
    NoMac { index: usize },
    /// An address that does not make a CIDR; `key` is the field, when one alone is at fault.
    #[error("[{index}]{}: {error}", key.map(|k| format!(".{k}")).unwrap_or_default())]
    Address {
        index: usize,
        key: Option<&'static str>,
        #[source]
        error: super::netconfig::AddrError,
    },
}

/// A malformed metadata key, named.
fn in_key(key: &str, e: MetadataError) -> SourceError {
    SourceError::Malformed {
        source_name: NAME,
        error: super::Malformed::In {
            path: key.into(),
            error: Box::new(super::Malformed::SmartOs(e)),
        },
    }
}

/// `sdc:routes`: a JSON list of `{"dst": CIDR, "gateway": IP, "linklocal": bool}`.
fn routes(text: &str) -> Result<Vec<Value>, MetadataError> {
    let list: Vec<Value> = serde_json::from_str(text)?;
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let s = |k: &'static str| -> Result<String, MetadataError> {
            r.get(k)
                .and_then(Value::as_str)
                .map(String::from)
                .ok_or(MetadataError::NotAString { index: i, key: k })
        };
        let dst = s("dst")?;
        let dst = super::netconfig::to_cidr(
            &dst,
            if dst.contains(':') {
                Some("128")
            } else {
                Some("32")
            },
        )
        .map_err(|error| MetadataError::Address {
            index: i,
            key: Some("dst"),
            error,
        })?;
        out.push(json!({"destination": dst, "gateway": s("gateway")?}));
    }
    Ok(out)
}

fn nics(text: &str) -> Result<Value, MetadataError> {
    let list: Vec<Value> = serde_json::from_str(text)?;
    let mut interfaces = Vec::new();
    let (mut gw4, mut gw6): (Option<String>, Option<String>) = (None, None);
    for (i, n) in list.iter().enumerate() {
        let mac = n
            .get("mac")
            .and_then(Value::as_str)
            .ok_or(MetadataError::NoMac { index: i })?;
        let ips: Vec<String> = match (n.get("ips"), n.get("ip")) {
            (Some(Value::Array(a)), _) => a
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            (_, Some(Value::String(ip))) if ip == "dhcp" => vec![ip.clone()],
            (_, Some(Value::String(ip))) => {
                let mask = n
                    .get("netmask")
                    .and_then(Value::as_str)
                    .unwrap_or("255.255.255.0");
                let cidr = super::netconfig::to_cidr(ip, Some(mask)).map_err(|error| {
                    MetadataError::Address {
                        index: i,
                        key: None,
                        error,
                    }
                })?;
                vec![cidr]
            }
            _ => vec![],
        };
        let addrs: Vec<Value> = ips
            .iter()
            .map(|ip| match ip.as_str() {
                "dhcp" => json!({"kind":"dhcp"}),
                "addrconf" => json!({"kind":"addrconf"}),
                ip => json!({"kind":"static","address":ip}),
            })
            .collect();
        if n.get("primary").and_then(Value::as_bool) == Some(true) {
            let mut gws: Vec<String> = n
                .get("gateways")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect();
            gws.extend(n.get("gateway").and_then(Value::as_str).map(String::from));
            // The first gateway of each family of the primary NIC (as cloud-init).
            for g in gws {
                let slot = if g.contains(':') { &mut gw6 } else { &mut gw4 };
                slot.get_or_insert(g);
            }
        }
        // `interface` is the zone's link name (net0); a guest VM's link differs, so the
        // NIC is found by its MAC and `interface` only names it.
        let mut iface = json!({"mac": mac, "addresses": addrs});
        if let Some(name) = n.get("interface").and_then(Value::as_str) {
            iface["id"] = json!(name);
        }
        if let Some(mtu) = n.get("mtu").and_then(Value::as_u64) {
            iface["mtu"] = json!(mtu);
        }
        interfaces.push(iface);
    }
    let mut out = json!({"interfaces": interfaces});
    if let Some(g) = gw4 {
        out["default_route"] = json!(g);
    }
    if let Some(g) = gw6 {
        out["default_route6"] = json!(g);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runner::{Output, Recorder};

    fn prog() -> (tempfile::TempDir, std::path::PathBuf, String) {
        let t = tempfile::tempdir().unwrap();
        let prog = t.path().join("mdata-get");
        std::fs::write(&prog, "").unwrap();
        let p = prog.display().to_string();
        (t, prog, p)
    }

    // Scripted mdata-get: stdout is the value with a newline added when it has none, a
    // missing key is exit 1 with "No metadata for 'KEY'" on stderr (mdata-client's
    // mdata_get.c, `print_response`); sdc:nics, sdc:resolvers and sdc:routes are JSON
    // (Triton's metadata data dictionary, as cloud-init's DataSourceSmartOS reads them).
    #[test]
    fn bad_routes_and_nics_name_the_key_the_entry_and_the_field() {
        let e = routes(
            r#"[{"dst":"10.0.0.0/8","gateway":"10.0.0.1"},{"dst":"nowhere","gateway":"10.0.0.1"}]"#,
        )
        .unwrap_err();
        assert_eq!(
            in_key("sdc:routes", e).to_string(),
            "source smartos: sdc:routes: [1].dst: \"nowhere\" is not an IP address"
        );
        let e = routes(r#"[{"dst":"10.0.0.0/8"}]"#).unwrap_err();
        assert_eq!(e.to_string(), "[0].gateway must be a string");
        let e = nics(r#"[{"ip":"10.0.0.2"}]"#).unwrap_err();
        assert!(matches!(e, MetadataError::NoMac { index: 0 }), "{e}");
        let e = nics("[").unwrap_err();
        assert!(matches!(e, MetadataError::Json(_)), "{e}");
    }

    #[test]
    fn keys_are_fetched_with_mdata_get_and_missing_keys_are_skipped() {
        let (_t, prog, p) = prog();
        let rec = Recorder::new();
        rec.on(&format!("{p} sdc:uuid"), Output::ok("abc-123\n"))
            .on(&format!("{p} hostname"), Output::ok("web1.example.com\n"))
            .on(&format!("{p} sdc:dns_domain"), Output::ok("example.com\n"))
            .on(&format!("{p} sdc:resolvers"), Output::ok("[\"8.8.8.8\",\"8.8.4.4\"]\n"))
            .on(&format!("{p} sdc:routes"), Output::ok(r#"[{"linklocal":false,"dst":"10.64.0.0/16","gateway":"10.0.0.254"},{"linklocal":false,"dst":"172.20.1.1","gateway":"10.0.0.253"}]"#))
            .on(&format!("{p} sdc:nics"), Output::ok(r#"[{"interface":"net0","mac":"90:b8:d0:1:2:3","ips":["10.0.0.9/24","2001:db8::9/64"],"gateways":["10.0.0.1","2001:db8::1"],"primary":true,"mtu":1500},{"interface":"net1","mac":"90:b8:d0:1:2:4","ips":["dhcp","addrconf"]}]"#))
            .on(&format!("{p} root_authorized_keys"), Output::failed(1, "No metadata for 'root_authorized_keys'\n"))
            .on(&format!("{p} cloud-init:user-data"), Output::ok("#cloud-config\ntimezone: UTC\n"));
        let f = read(&rec, &prog).unwrap().unwrap();
        assert_eq!(f.instance_id.as_deref(), Some("abc-123"));
        assert_eq!(
            Value::Object(f.desired),
            json!({"timezone":"UTC","hostname":"web1","dns":{"search":["example.com"],"nameservers":["8.8.8.8","8.8.4.4"]},
                "network":{"interfaces":[
                    {"id":"net0","mac":"90:b8:d0:1:2:3","mtu":1500,"addresses":[{"kind":"static","address":"10.0.0.9/24"},{"kind":"static","address":"2001:db8::9/64"}]},
                    {"id":"net1","mac":"90:b8:d0:1:2:4","addresses":[{"kind":"dhcp"},{"kind":"addrconf"}]}],
                    "default_route":"10.0.0.1","default_route6":"2001:db8::1",
                    "routes":[{"destination":"10.64.0.0/16","gateway":"10.0.0.254"},{"destination":"172.20.1.1/32","gateway":"10.0.0.253"}]}})
        );
        let lines: Vec<String> = rec
            .lines()
            .iter()
            .map(|l| l.replace(&p, "mdata-get"))
            .collect();
        assert_eq!(
            lines,
            [
                "mdata-get sdc:uuid",
                "mdata-get hostname",
                "mdata-get sdc:dns_domain",
                "mdata-get sdc:resolvers",
                "mdata-get sdc:routes",
                "mdata-get sdc:nics",
                "mdata-get root_authorized_keys",
                "mdata-get cloud-init:user-data",
            ]
        );
    }

    #[test]
    fn sdc_hostname_is_the_fallback() {
        let (_t, prog, p) = prog();
        let rec = Recorder::new();
        rec.on(&format!("{p} sdc:uuid"), Output::ok("u\n"))
            .on(
                &format!("{p} hostname"),
                Output::failed(1, "No metadata for 'hostname'\n"),
            )
            .on(&format!("{p} sdc:hostname"), Output::ok("zone1\n"))
            .always(&format!("{p} "), Output::failed(1, "No metadata\n"));
        let f = read(&rec, &prog).unwrap().unwrap();
        assert_eq!(Value::Object(f.desired), json!({"hostname":"zone1"}));
    }

    #[test]
    fn an_mdata_get_error_is_not_an_abort() {
        // Exit 2 on sdc:uuid: no metadata protocol here ("ERROR: could not initialise
        // protocol", mdata_get.c main), so the source finds nothing.
        let (_t, prog, p) = prog();
        let rec = Recorder::new();
        rec.on(
            &format!("{p} sdc:uuid"),
            Output::failed(2, "ERROR: could not initialise protocol: timeout\n"),
        );
        assert_eq!(read(&rec, &prog).unwrap(), None);
        // Exit 2 on another key: that key is absent, the rest still read.
        let rec = Recorder::new();
        rec.on(&format!("{p} sdc:uuid"), Output::ok("u\n"))
            .on(
                &format!("{p} hostname"),
                Output::failed(2, "Error getting metadata: boom\n"),
            )
            .on(&format!("{p} sdc:hostname"), Output::ok("h2\n"))
            .always(&format!("{p} "), Output::failed(1, "No metadata\n"));
        let f = read(&rec, &prog).unwrap().unwrap();
        assert_eq!(Value::Object(f.desired), json!({"hostname":"h2"}));
    }

    #[test]
    fn malformed_resolvers_is_an_error() {
        let (_t, prog, p) = prog();
        let rec = Recorder::new();
        rec.on(&format!("{p} sdc:uuid"), Output::ok("u\n"))
            .on(&format!("{p} hostname"), Output::failed(1, ""))
            .on(&format!("{p} sdc:hostname"), Output::failed(1, ""))
            .on(&format!("{p} sdc:dns_domain"), Output::failed(1, ""))
            .on(&format!("{p} sdc:resolvers"), Output::ok("not json"));
        let err = read(&rec, &prog).unwrap_err().to_string();
        assert!(err.starts_with("source smartos: sdc:resolvers:"), "{err}");
    }
}
