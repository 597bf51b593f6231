//! What the zone tools print and read: the zonecfg subcommands for a description, the
//! machine-parsable `zoneadm list -cp` lines and the `zonecfg export` text, and how an
//! existing configuration differs from a description.

use crate::schema::{IpType, Zone, ZoneNet};

/// A zone's state as zoneadm names it (libzonecfg's `ZONE_STATE_STR_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Configured,
    /// An install or uninstall started and did not finish.
    Incomplete,
    Installed,
    Ready,
    /// Mounted for maintenance (scratch zone), not booted.
    Mounted,
    Running,
    ShuttingDown,
    Down,
    Other(String),
}

impl State {
    pub fn parse(s: &str) -> State {
        match s {
            "configured" => State::Configured,
            "incomplete" => State::Incomplete,
            "installed" => State::Installed,
            "ready" => State::Ready,
            "mounted" => State::Mounted,
            "running" => State::Running,
            "shutting_down" => State::ShuttingDown,
            "down" => State::Down,
            other => State::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            State::Configured => "configured",
            State::Incomplete => "incomplete",
            State::Installed => "installed",
            State::Ready => "ready",
            State::Mounted => "mounted",
            State::Running => "running",
            State::ShuttingDown => "shutting_down",
            State::Down => "down",
            State::Other(s) => s,
        }
    }
}

/// One line of `zoneadm list -cp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// `None` for a zone that is not ready or running (zoneadm prints `-`).
    pub id: Option<u64>,
    pub name: String,
    pub state: State,
    pub zonepath: String,
    /// Empty until the zone is installed.
    pub uuid: String,
    pub brand: String,
    /// `excl` or `shared`, as zoneadm prints it.
    pub ip_type: String,
}

/// Splits one parsable zoneadm line into fields. zoneadm writes each `:` inside the
/// zonepath as `\:` and escapes nothing else, so only `\:` is an escape (and a zonepath
/// ending in a backslash cannot be told apart; sysconfig's zonepaths hold none).
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&':') => {
                chars.next();
                cur.push(':');
            }
            ':' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Parses `zoneadm list -cp`: `zoneid:zonename:state:zonepath:uuid:brand:ip-type`, and
/// current illumos appends a debug id. zoneadm(8) says parsers must take fields added in
/// the future, so fields past the seventh are ignored; a line without at least a name
/// and a state is skipped. The global zone is left out.
pub fn parse_list(text: &str) -> Vec<Listed> {
    text.lines()
        .filter_map(|line| {
            let f = fields(line.trim_end_matches('\r'));
            if f.len() < 3 || f[1].is_empty() || f[2].is_empty() || f[1] == "global" {
                return None;
            }
            let get = |i: usize| f.get(i).cloned().unwrap_or_default();
            Some(Listed {
                id: f[0].parse().ok(),
                name: f[1].clone(),
                state: State::parse(&f[2]),
                zonepath: get(3),
                uuid: get(4),
                brand: get(5),
                ip_type: get(6),
            })
        })
        .collect()
}

/// The zonepath a description gives, or its default `/zones/NAME`.
pub fn zonepath_of(z: &Zone) -> String {
    z.zonepath
        .clone()
        .unwrap_or_else(|| format!("/zones/{}", z.name))
}

fn ip_type_word(t: IpType) -> &'static str {
    match t {
        IpType::Exclusive => "exclusive",
        IpType::Shared => "shared",
    }
}

/// The zonecfg subcommands that configure `z` from nothing, `;`-separated for one
/// command-line argument. `create -b` starts from a blank configuration, so the result
/// is the description and nothing else (plain `create` copies the distribution's
/// default template, which differs between OpenIndiana and OmniOS and between brands);
/// `-F` replaces an existing configuration. Every value was checked to be plain
/// characters, so none needs quoting for zonecfg's lexer.
pub fn zonecfg_script(z: &Zone, replace: bool) -> String {
    let mut s = vec![
        if replace { "create -F -b" } else { "create -b" }.to_string(),
        // The brand first: zonecfg checks brand-specific resources and properties
        // against the brand that is set when they are added.
        format!("set brand={}", z.brand),
        format!("set zonepath={}", zonepath_of(z)),
        format!("set autoboot={}", z.autoboot),
        format!("set ip-type={}", ip_type_word(z.ip_type)),
    ];
    for n in &z.networks {
        s.push("add net".into());
        let props = [
            ("physical", Some(&n.physical)),
            ("address", n.address.as_ref()),
            ("allowed-address", n.allowed_address.as_ref()),
            ("defrouter", n.defrouter.as_ref()),
            ("global-nic", n.global_nic.as_ref()),
        ];
        for (k, v) in props {
            if let Some(v) = v {
                s.push(format!("set {k}={v}"));
            }
        }
        s.push("end".into());
    }
    for d in &z.datasets {
        s.extend(["add dataset".into(), format!("set name={d}"), "end".into()]);
    }
    s.push("verify".into());
    s.push("commit".into());
    s.join("; ")
}

/// One `net` resource as zonecfg holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Net {
    pub physical: String,
    pub address: String,
    pub allowed_address: String,
    pub defrouter: String,
    pub global_nic: String,
}

impl Net {
    fn of(n: &ZoneNet) -> Net {
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        Net {
            physical: n.physical.clone(),
            address: s(&n.address),
            allowed_address: s(&n.allowed_address),
            defrouter: s(&n.defrouter),
            global_nic: s(&n.global_nic),
        }
    }

    fn show(&self) -> String {
        let mut parts = vec![format!("physical={}", self.physical)];
        for (k, v) in [
            ("address", &self.address),
            ("allowed-address", &self.allowed_address),
            ("defrouter", &self.defrouter),
            ("global-nic", &self.global_nic),
        ] {
            if !v.is_empty() {
                parts.push(format!("{k}={v}"));
            }
        }
        parts.join(" ")
    }
}

/// The part of a zone's configuration the description covers, read from
/// `zonecfg -z NAME export`. Other resources (fs, device, rctl, attr ...) are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub brand: Option<String>,
    pub zonepath: Option<String>,
    pub autoboot: Option<bool>,
    pub ip_type: Option<String>,
    pub nets: Vec<Net>,
    pub datasets: Vec<String>,
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(v)
        .to_string()
}

/// Parses `zonecfg export`: `create -b`, then `set PROP=VALUE` lines for the global
/// properties, and each resource as `add TYPE`, its `set` (and, inside a resource,
/// `add PROP VALUE`) lines, `end`. zonecfg quotes a value that holds a space.
pub fn parse_export(text: &str) -> Config {
    enum Scope {
        Global,
        Net(Net),
        Dataset(String),
        Other,
    }
    let mut c = Config::default();
    let mut scope = Scope::Global;
    for line in text.lines().map(str::trim) {
        if line == "end" {
            match std::mem::replace(&mut scope, Scope::Global) {
                Scope::Net(n) => c.nets.push(n),
                Scope::Dataset(d) if !d.is_empty() => c.datasets.push(d),
                _ => {}
            }
            continue;
        }
        if let Some(res) = line.strip_prefix("add ") {
            // Inside a resource, `add` adds to a list property (`add options ro`).
            if matches!(scope, Scope::Global) {
                scope = match res.trim() {
                    "net" => Scope::Net(Net::default()),
                    "dataset" => Scope::Dataset(String::new()),
                    _ => Scope::Other,
                };
            }
            continue;
        }
        let Some((k, v)) = line.strip_prefix("set ").and_then(|kv| kv.split_once('=')) else {
            continue;
        };
        let (k, v) = (k.trim(), unquote(v));
        match &mut scope {
            Scope::Global => match k {
                "brand" => c.brand = Some(v),
                "zonepath" => c.zonepath = Some(v),
                "autoboot" => c.autoboot = Some(v == "true"),
                "ip-type" => c.ip_type = Some(v),
                _ => {}
            },
            Scope::Net(n) => match k {
                "physical" => n.physical = v,
                "address" => n.address = v,
                "allowed-address" => n.allowed_address = v,
                "defrouter" => n.defrouter = v,
                "global-nic" => n.global_nic = v,
                _ => {}
            },
            Scope::Dataset(d) => {
                if k == "name" {
                    *d = v;
                }
            }
            Scope::Other => {}
        }
    }
    c
}

fn list(items: &[String]) -> String {
    items.join(", ")
}

/// How the existing configuration differs from the description, one phrase per
/// difference; empty when it matches. zonecfg leaves out `brand` for the native brand,
/// and a blank configuration has autoboot false and ip-type shared.
pub fn differences(z: &Zone, c: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let brand = c.brand.as_deref().unwrap_or("native");
    if brand != z.brand {
        out.push(format!("brand is {brand} (want {})", z.brand));
    }
    let want_path = zonepath_of(z);
    let path = c.zonepath.as_deref().unwrap_or("");
    if path != want_path {
        out.push(format!("zonepath is {path:?} (want {want_path})"));
    }
    let autoboot = c.autoboot.unwrap_or(false);
    if autoboot != z.autoboot {
        out.push(format!("autoboot is {autoboot} (want {})", z.autoboot));
    }
    let ip = c.ip_type.as_deref().unwrap_or("shared");
    let want_ip = ip_type_word(z.ip_type);
    if ip != want_ip {
        out.push(format!("ip-type is {ip} (want {want_ip})"));
    }
    let mut has: Vec<Net> = c.nets.clone();
    let mut want: Vec<Net> = z.networks.iter().map(Net::of).collect();
    has.sort();
    want.sort();
    if has != want {
        let show = |v: &[Net]| list(&v.iter().map(Net::show).collect::<Vec<_>>());
        out.push(format!(
            "net resources are [{}] (want [{}])",
            show(&has),
            show(&want)
        ));
    }
    let mut has_ds = c.datasets.clone();
    let mut want_ds = z.datasets.clone();
    has_ds.sort();
    want_ds.sort();
    if has_ds != want_ds {
        out.push(format!(
            "datasets are [{}] (want [{}])",
            list(&has_ds),
            list(&want_ds)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(json: serde_json::Value) -> Zone {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn list_lines_with_escaped_colons_missing_and_extra_fields() {
        let text = "0:global:running:/::ipkg:shared:0\n\
                    3:web:running:/zones/web:9f2e6d1a-4c1b-6a43-e0d2-8c1f0b5e7a21:ipkg:excl:0\n\
                    -:db:installed:/zones/db\\:1:0c9e1f4a-77aa-4c38-9f6e-d6a0c2b4e811:lipkg:shared:\n\
                    -:new:configured:/zones/new::ipkg:excl\n\
                    -:odd:incomplete\n\
                    garbage\n\
                    \n";
        let l = parse_list(text);
        assert_eq!(l.len(), 4, "{l:?}");
        assert_eq!(
            l[0],
            Listed {
                id: Some(3),
                name: "web".into(),
                state: State::Running,
                zonepath: "/zones/web".into(),
                uuid: "9f2e6d1a-4c1b-6a43-e0d2-8c1f0b5e7a21".into(),
                brand: "ipkg".into(),
                ip_type: "excl".into(),
            }
        );
        assert_eq!(l[1].id, None);
        assert_eq!(l[1].zonepath, "/zones/db:1");
        assert_eq!(l[1].ip_type, "shared");
        assert_eq!(
            (l[2].state.clone(), l[2].uuid.as_str()),
            (State::Configured, "")
        );
        assert_eq!(l[3].state, State::Incomplete);
        assert_eq!(l[3].zonepath, "");
        assert_eq!(State::parse("shutting_down").as_str(), "shutting_down");
        assert_eq!(State::parse("frobbed"), State::Other("frobbed".into()));
    }

    #[test]
    fn script_for_an_exclusive_zone_with_a_vnic_and_a_dataset() {
        let z = zone(serde_json::json!({
            "name": "web",
            "networks": [{"physical": "web0", "allowed_address": "10.0.0.5/24", "defrouter": "10.0.0.1", "global_nic": "e1000g0"}],
            "datasets": ["tank/web"]
        }));
        assert_eq!(
            zonecfg_script(&z, false),
            "create -b; set brand=ipkg; set zonepath=/zones/web; set autoboot=true; \
             set ip-type=exclusive; add net; set physical=web0; set allowed-address=10.0.0.5/24; \
             set defrouter=10.0.0.1; set global-nic=e1000g0; end; add dataset; set name=tank/web; \
             end; verify; commit"
        );
        let shared = zone(serde_json::json!({
            "name": "old", "brand": "lipkg", "zonepath": "/export/old", "autoboot": false,
            "ip_type": "shared", "networks": [{"physical": "vioif0", "address": "192.168.1.9/24"}]
        }));
        assert_eq!(
            zonecfg_script(&shared, true),
            "create -F -b; set brand=lipkg; set zonepath=/export/old; set autoboot=false; \
             set ip-type=shared; add net; set physical=vioif0; set address=192.168.1.9/24; end; \
             verify; commit"
        );
    }

    const EXPORT: &str = "create -b\n\
        set zonepath=/zones/web\n\
        set brand=ipkg\n\
        set autoboot=true\n\
        set limitpriv=default,dtrace_proc\n\
        set ip-type=exclusive\n\
        add fs\n\
        set dir=/data\n\
        set special=/export/data\n\
        set type=lofs\n\
        add options ro\n\
        end\n\
        add net\n\
        set allowed-address=10.0.0.5/24\n\
        set physical=web0\n\
        set defrouter=10.0.0.1\n\
        end\n\
        add dataset\n\
        set name=tank/web\n\
        end\n\
        add attr\n\
        set name=comment\n\
        set type=string\n\
        set value=\"a web zone\"\n\
        end\n";

    #[test]
    fn export_is_read_and_compared_on_the_described_fields_only() {
        let c = parse_export(EXPORT);
        assert_eq!(c.brand.as_deref(), Some("ipkg"));
        assert_eq!(c.zonepath.as_deref(), Some("/zones/web"));
        assert_eq!(c.autoboot, Some(true));
        assert_eq!(c.ip_type.as_deref(), Some("exclusive"));
        assert_eq!(
            c.nets,
            [Net {
                physical: "web0".into(),
                allowed_address: "10.0.0.5/24".into(),
                defrouter: "10.0.0.1".into(),
                ..Net::default()
            }]
        );
        assert_eq!(c.datasets, ["tank/web"]);
        let z = zone(serde_json::json!({
            "name": "web",
            "networks": [{"physical": "web0", "allowed_address": "10.0.0.5/24", "defrouter": "10.0.0.1"}],
            "datasets": ["tank/web"]
        }));
        assert!(differences(&z, &c).is_empty(), "{:?}", differences(&z, &c));
        let other = zone(serde_json::json!({
            "name": "web", "brand": "nlipkg", "autoboot": false, "ip_type": "shared",
            "networks": [{"physical": "vioif0", "address": "10.0.0.9/24"}]
        }));
        assert_eq!(
            differences(&other, &c),
            [
                "brand is ipkg (want nlipkg)",
                "autoboot is true (want false)",
                "ip-type is exclusive (want shared)",
                "net resources are [physical=web0 allowed-address=10.0.0.5/24 defrouter=10.0.0.1] (want [physical=vioif0 address=10.0.0.9/24])",
                "datasets are [tank/web] (want [])",
            ]
        );
    }

    #[test]
    fn a_blank_export_has_zonecfg_defaults() {
        let c = parse_export("create -b\nset zonepath=/zones/z\n");
        let z = zone(serde_json::json!({"name": "z"}));
        assert_eq!(
            differences(&z, &c),
            [
                "brand is native (want ipkg)",
                "autoboot is false (want true)",
                "ip-type is shared (want exclusive)"
            ]
        );
    }

    mod prop {
        use super::super::*;
        use super::zone;
        use proptest::prelude::*;

        fn state() -> impl Strategy<Value = &'static str> {
            prop::sample::select(vec![
                "configured",
                "incomplete",
                "installed",
                "ready",
                "mounted",
                "running",
                "shutting_down",
                "down",
            ])
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

            /// A line printed the way zoneadm's zone_print() does (colons in the zonepath
            /// escaped, a debug id or nothing at the end) parses back to its fields.
            #[test]
            fn zoneadm_lines_round_trip(
                id in prop::option::of(1u64..10_000),
                name in "[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}",
                state in state(),
                // No backslash: zoneadm does not escape one, so a zonepath ending in `\`
                // reads as an escaped colon (sysconfig's own zonepaths have none).
                path in "(/[a-z0-9: _.-]{1,12}){1,4}",
                uuid in "([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})?",
                brand in "[a-z]{2,8}",
                excl in any::<bool>(),
                did in prop::option::of(0u32..100),
            ) {
                prop_assume!(name != "global");
                let ip = if excl { "excl" } else { "shared" };
                let line = format!(
                    "{}:{name}:{state}:{}:{uuid}:{brand}:{ip}:{}",
                    id.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
                    path.replace(':', "\\:"),
                    did.map(|d| d.to_string()).unwrap_or_default(),
                );
                let text = format!("0:global:running:/::ipkg:shared:0\n{line}\n");
                let got = parse_list(&text);
                prop_assert_eq!(got.len(), 1);
                prop_assert_eq!(&got[0], &Listed {
                    id,
                    name: name.clone(),
                    state: State::parse(state),
                    zonepath: path.clone(),
                    uuid: uuid.clone(),
                    brand: brand.clone(),
                    ip_type: ip.to_string(),
                });
                prop_assert_eq!(got[0].state.as_str(), state);
            }

            #[test]
            fn any_text_parses_without_panicking(s in "(.|\n){0,400}") {
                let _ = parse_list(&s);
                let c = parse_export(&s);
                let z = zone(serde_json::json!({"name": "z"}));
                let _ = differences(&z, &c);
            }

            /// Whatever the script for a zone is, zonecfg's export of that zone reads
            /// back as no difference.
            #[test]
            fn the_export_of_a_scripted_zone_matches_it(
                nets in prop::collection::vec(("[a-z]{1,6}[0-9]", "10\\.[0-9]\\.[0-9]\\.[1-9]/24"), 0..3),
                datasets in prop::collection::vec("tank/[a-z]{1,8}", 0..3),
                autoboot in any::<bool>(),
            ) {
                let z = zone(serde_json::json!({
                    "name": "p",
                    "autoboot": autoboot,
                    "networks": nets.iter().map(|(l, a)| serde_json::json!({"physical": l, "allowed_address": a})).collect::<Vec<_>>(),
                    "datasets": datasets,
                }));
                // What zonecfg export prints for that configuration: one line per
                // subcommand of the script, properties in export's own order.
                let mut export = String::from("create -b\nset zonepath=/zones/p\nset brand=ipkg\n");
                export.push_str(&format!("set autoboot={autoboot}\nset ip-type=exclusive\n"));
                for (l, a) in nets.iter().rev() {
                    export.push_str(&format!("add net\nset allowed-address={a}\nset physical={l}\nend\n"));
                }
                for d in &z.datasets {
                    export.push_str(&format!("add dataset\nset name={d}\nend\n"));
                }
                prop_assert!(differences(&z, &parse_export(&export)).is_empty());
            }
        }
    }
}
