//! Differential test: every network document of the corpus (tests/metadata/network, made
//! by its generate.py) is read by sysconfig and by cloud-init's own parsers
//! (tests/cloudinit_network.py: `network_state.parse_net_config_data`, after
//! `openstack.convert_net_json` for network_data.json and
//! `DataSourceSmartOS.convert_smartos_network_data` for SmartOS metadata, which sysconfig
//! reads through its SmartOS source with a scripted mdata-get). Both are reduced to the
//! same meaning: interfaces by MAC (bonds by their members, VLANs by link and id),
//! addresses with prefixes, DHCP, MTU, routes (destination, gateway) and DNS. Where the document
//! holds what illumos cannot do, sysconfig must also say so in `network.warnings`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use runner::{Cmd, Runner};
use serde_json::{json, Map, Value};

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/metadata/network");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".network-config")
                || n.ends_with(".network_data.json")
                || n.ends_with(".smartos.json")
        })
        .collect();
    v.sort();
    v
}

fn ip(s: &str) -> String {
    s.parse::<IpAddr>()
        .unwrap_or_else(|_| panic!("{s} is not an address"))
        .to_string()
}

fn split(c: &str) -> (IpAddr, u32) {
    let (a, p) = c
        .split_once('/')
        .unwrap_or_else(|| panic!("{c} has no prefix"));
    (a.parse().unwrap(), p.parse().unwrap())
}

fn iface_addr(c: &str) -> String {
    let (a, p) = split(c);
    format!("{a}/{p}")
}

fn network(c: &str) -> String {
    let (a, p) = split(c);
    match a {
        IpAddr::V4(v) => {
            let m = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            format!("{}/{p}", std::net::Ipv4Addr::from(u32::from(v) & m))
        }
        IpAddr::V6(v) => {
            let m = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            format!("{}/{p}", std::net::Ipv6Addr::from(u128::from(v) & m))
        }
    }
}

/// sysconfig's desired `network` and `dns`, in the helper's normalized form.
fn meaning(d: &Map<String, Value>) -> Value {
    let empty = json!({});
    let net = d.get("network").unwrap_or(&empty);
    let ifaces: Vec<&Value> = net["interfaces"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let by_id: BTreeMap<&str, &Value> = ifaces
        .iter()
        .filter_map(|i| i["id"].as_str().map(|id| (id, *i)))
        .collect();
    fn key(i: &Value, by_id: &BTreeMap<&str, &Value>) -> String {
        match i["kind"].as_str().unwrap_or("physical") {
            "bond" => {
                let mut m: Vec<String> = i["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| key(by_id[m.as_str().unwrap()], by_id))
                    .collect();
                m.sort();
                format!("bond({})", m.join(","))
            }
            "vlan" => format!(
                "vlan({},{})",
                key(by_id[i["vlan_link"].as_str().unwrap()], by_id),
                i["vlan_id"]
            ),
            _ => match i["mac"].as_str() {
                Some(m) => m.to_lowercase(),
                None => format!("name:{}", i["id"].as_str().unwrap()),
            },
        }
    }
    let mut out_ifaces = Map::new();
    for i in &ifaces {
        let addrs = i["addresses"].as_array().cloned().unwrap_or_default();
        let mut statics: Vec<String> = addrs
            .iter()
            .filter(|a| a["kind"] == "static")
            .map(|a| iface_addr(a["address"].as_str().unwrap()))
            .collect();
        statics.sort();
        out_ifaces.insert(
            key(i, &by_id),
            json!({
                "addresses": statics,
                "dhcp4": addrs.iter().any(|a| a["kind"] == "dhcp"),
                "dhcp6": addrs.iter().any(|a| a["kind"] == "addrconf"),
                "mtu": i.get("mtu").cloned().unwrap_or(Value::Null),
            }),
        );
    }
    let mut routes = BTreeSet::new();
    if let Some(g) = net["default_route"].as_str() {
        routes.insert(("0.0.0.0/0".to_string(), ip(g)));
    }
    if let Some(g) = net["default_route6"].as_str() {
        routes.insert(("::/0".to_string(), ip(g)));
    }
    for r in net["routes"].as_array().into_iter().flatten() {
        routes.insert((
            network(r["destination"].as_str().unwrap()),
            ip(r["gateway"].as_str().unwrap()),
        ));
    }
    let list = |k: &str, f: fn(&str) -> String| -> Vec<String> {
        let s: BTreeSet<String> = d
            .get("dns")
            .and_then(|x| x[k].as_array())
            .into_iter()
            .flatten()
            .map(|v| f(v.as_str().unwrap()))
            .collect();
        s.into_iter().collect()
    };
    json!({
        "interfaces": out_ifaces,
        "routes": routes.into_iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
        "nameservers": list("nameservers", ip),
        "search": list("search", |s| s.to_string()),
    })
}

fn ours(path: &Path) -> Map<String, Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let d = if name.ends_with(".smartos.json") {
        smartos(&text)
    } else if name.ends_with(".json") {
        sysconfig::sources::netconfig::from_network_data(&text)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    } else {
        sysconfig::sources::netconfig::parse("nocloud", &text)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    // What sysconfig produces must also be a valid desired state.
    serde_json::from_value::<sysconfig::schema::Desired>(Value::Object(d.clone()))
        .unwrap_or_else(|e| panic!("{name}: not a valid desired state: {e}"));
    d
}

/// The SmartOS source itself, with mdata-get scripted from the document: each key's value
/// as mdata-get prints it (exit 0), every other key exit 1 "No metadata for 'KEY'"
/// (mdata-client's mdata_get.c).
fn smartos(text: &str) -> Map<String, Value> {
    let doc: Map<String, Value> = serde_json::from_str(text).unwrap();
    let t = tempfile::tempdir().unwrap();
    let prog = t.path().join("mdata-get");
    std::fs::write(&prog, "").unwrap();
    let p = prog.display().to_string();
    let rec = runner::Recorder::new();
    rec.on(
        &format!("{p} sdc:uuid"),
        runner::Output::ok("d6b5a3e2-0000-4000-8000-000000000001\n"),
    );
    for (k, v) in &doc {
        let printed = match v {
            Value::String(s) => format!("{s}\n"),
            other => format!("{other}\n"),
        };
        rec.on(&format!("{p} {k}"), runner::Output::ok(printed));
    }
    rec.always(
        &format!("{p} "),
        runner::Output::failed(1, "No metadata for 'key'\n"),
    );
    let found = sysconfig::sources::smartos::read(&rec, &prog)
        .unwrap()
        .expect("the SmartOS source finds its metadata");
    let mut d = found.desired;
    d.retain(|k, _| k == "network" || k == "dns");
    d
}

#[test]
fn corpus_has_at_least_twenty_documents_of_each_producer_shape() {
    let files = corpus();
    assert!(files.len() >= 20, "{} documents", files.len());
    for prefix in ["v1-", "v2-", "os-", "sdc-"] {
        assert!(files
            .iter()
            .any(|f| f.file_name().unwrap().to_string_lossy().starts_with(prefix)));
    }
}

#[test]
fn the_corpus_is_what_its_generator_writes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/metadata/network");
    if !Path::new("/usr/bin/python3").exists() {
        println!("skipped: no /usr/bin/python3");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let out = runner::SystemRunner::new()
        .output(
            &Cmd::new("/usr/bin/python3")
                .arg(dir.join("generate.py"))
                .arg(t.path()),
        )
        .expect("python3 runs");
    if !out.success() {
        println!(
            "skipped: generate.py needs Debian's python3 with PyYAML: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return;
    }
    let mut written: Vec<String> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    let committed: Vec<String> = corpus()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written, committed);
    for name in &written {
        assert_eq!(
            std::fs::read_to_string(t.path().join(name)).unwrap(),
            std::fs::read_to_string(dir.join(name)).unwrap(),
            "{name} differs from what generate.py writes: run it again"
        );
    }
}

/// (file, what cloud-init reports, what the document means)
const CLOUD_INIT_22_4_ROUTE_BUG: &[(&str, &str, &str)] =
    &[("v2-routes.network-config", "::/64", "::/0")];

#[test]
fn sysconfig_reads_every_network_document_as_cloud_init_does() {
    let files = corpus();
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cloudinit_network.py");
    // Debian's cloud-init package is for Debian's Python; another python3 first on PATH
    // (a pyenv) does not see it.
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let out = runner::SystemRunner::new()
        .output(
            &Cmd::new(python)
                .arg(&helper)
                .args(files.iter().map(|f| f.display().to_string())),
        )
        .expect("python3 runs");
    if out.code == Some(3) {
        println!("{}", out.stdout_str().trim());
        return;
    }
    assert!(
        out.success(),
        "cloud-init helper failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut theirs: Map<String, Value> = serde_json::from_str(&out.stdout_str()).unwrap();
    // cloud-init 22.4 (Debian 12) reads a netplan route `to: ::/0` as `::/64`: its
    // `_normalize_net_keys` drops falsy values, so the split-off prefix 0 is lost and the
    // IPv6 default of 64 is used. netplan means the default route. Each entry must still
    // occur, so a fixed cloud-init makes this test say so.
    for &(file, bad, meant) in CLOUD_INIT_22_4_ROUTE_BUG {
        let routes = theirs[file]["routes"].as_array_mut().unwrap();
        let r = routes.iter_mut().find(|r| r[0] == bad).unwrap_or_else(|| {
            panic!("{file}: cloud-init no longer reads {meant} as {bad}; drop this entry")
        });
        r[0] = json!(meant);
        routes.sort_by_key(|r| r.to_string());
    }
    let mut failures = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let d = ours(f);
        let mine = meaning(&d);
        if mine != theirs[&name] {
            failures.push(format!(
                "{name}:\n  sysconfig:  {mine}\n  cloud-init: {}",
                theirs[&name]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!("{} documents agree with cloud-init", files.len());
}

#[test]
fn what_illumos_cannot_do_is_warned_by_name() {
    for (file, words) in [
        ("v1-bridge-warned.network-config", &["bridge br0"][..]),
        ("v2-bridge-warned.network-config", &["bridge br0"]),
        (
            "v1-active-backup-bond.network-config",
            &["bond bond0: mode active-backup"],
        ),
        (
            "v2-linux-only-keys.network-config",
            &["wakeonlan", "accept-ra", "link-local"],
        ),
        (
            "v2-ec2-dhcp.network-config",
            &["ethernets.eth1: dhcp4-overrides"],
        ),
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/metadata/network")
            .join(file);
        let d = ours(&path);
        let warnings = d["network"]["warnings"].to_string();
        for w in words {
            assert!(
                warnings.contains(w),
                "{file}: no warning about {w}: {warnings}"
            );
        }
    }
}
