//! IP interfaces and addresses with `ipadm`, idempotent by address object name.

use runner::Cmd;

use super::{op, unusable, Live, Op, IPADM};
use crate::plugins::Planned;
use crate::schema::{AddressKind, Interface};

fn obj_name(kind: AddressKind, n_static: usize, v6: bool) -> String {
    match kind {
        AddressKind::Dhcp => "dhcp".into(),
        AddressKind::Addrconf => "v6".into(),
        AddressKind::Static if v6 => format!("v6s{n_static}"),
        AddressKind::Static if n_static == 0 => "v4".into(),
        AddressKind::Static => format!("v4s{n_static}"),
    }
}

fn valid_obj(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
}

pub(super) fn ip_parts(addr: &str) -> Option<(std::net::IpAddr, u8)> {
    let (ip, prefix) = addr.split_once('/')?;
    let ip: std::net::IpAddr = ip.parse().ok()?;
    let p: u8 = prefix.parse().ok()?;
    (p <= if ip.is_ipv4() { 32 } else { 128 }).then_some((ip, p))
}

/// The IP interface on `link` and the address objects of `iface` that the system does not
/// have yet; an unusable address is reported in its place.
pub(super) fn plan_addresses(
    link: &str,
    iface: &Interface,
    sys: &Live,
    out: &mut Vec<Planned<Op>>,
) {
    if !sys.ifs.contains(link) {
        out.push(op(
            "network",
            format!("{link}/if"),
            format!("create IP interface {link}"),
            Op::CreateIf {
                link: link.to_string(),
            },
        ));
    }
    let mut n_static = 0;
    for (j, a) in iface.addresses.iter().enumerate() {
        let v6 = a.address.as_deref().is_some_and(|x| x.contains(':'));
        let name = match &a.name {
            Some(n) => n.clone(),
            None => obj_name(a.kind, n_static, v6),
        };
        if a.kind == AddressKind::Static {
            n_static += 1;
            let bad = match a.address.as_deref() {
                None => Some(format!("{link}: a static address needs `address`")),
                Some(addr) if ip_parts(addr).is_none() => {
                    Some(format!("{link}: address {addr} must be ADDRESS/PREFIX"))
                }
                Some(_) => None,
            };
            if let Some(m) = bad {
                out.push(unusable(format!("{link}/address-{j}"), m));
                continue;
            }
        }
        if !valid_obj(&name) {
            out.push(unusable(format!("{link}/address-{j}"), format!("{link}: address object name {name:?} must start with a letter and be at most 32 letters and digits")));
            continue;
        }
        let obj = format!("{link}/{name}");
        if !sys.objs.contains(&obj) {
            let what = match a.kind {
                AddressKind::Dhcp => "DHCP".to_string(),
                AddressKind::Addrconf => "IPv6 autoconf".to_string(),
                AddressKind::Static => a.address.clone().unwrap_or_default(),
            };
            out.push(op(
                "network",
                obj.clone(),
                format!("add {what} address {obj}"),
                Op::CreateAddr {
                    obj,
                    kind: a.kind,
                    address: a.address.clone(),
                },
            ));
        }
    }
}

pub fn create_if(link: &str) -> Cmd {
    Cmd::new(IPADM).args(["create-if", link])
}

pub fn create_addr(kind: AddressKind, address: Option<&str>, obj: &str) -> Cmd {
    let c = Cmd::new(IPADM).arg("create-addr");
    match kind {
        AddressKind::Dhcp => c.args(["-T", "dhcp", obj]),
        AddressKind::Addrconf => c.args(["-T", "addrconf", obj]),
        AddressKind::Static => c
            .args(["-T", "static", "-a"])
            .arg(format!("local={}", address.unwrap_or_default()))
            .arg(obj),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{live_ctx, live_state, run_all, PHYS};
    use runner::{Output, Recorder};
    use serde_json::json;

    #[test]
    fn live_plan_matches_macs_and_skips_existing_address_objects() {
        let rec = Recorder::new();
        rec.on(
            "/usr/sbin/dladm show-phys -m -p -o LINK,SLOT,ADDRESS",
            Output::ok(PHYS),
        );
        live_state(
            &rec,
            "vioif0\nvioif1\nvioif2\n",
            "lo0\nvioif0\n",
            "lo0/v4\nlo0/v6\nvioif0/dhcp\n",
        );
        let ctx = live_ctx(&rec);
        let d = json!({"network": {"interfaces": [
            {"id": "eth0", "mac": "52:54:00:00:00:01", "addresses": [{"kind": "dhcp"}, {"kind": "addrconf"}]},
            {"id": "eth1", "mac": "52:54:00:00:00:02", "addresses": [{"kind": "static", "address": "10.0.0.5/24"}]}
        ], "default_route": "10.0.0.1"}});
        let changes = run_all(&ctx, &d);
        let ids: Vec<&str> = changes.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            ["vioif0/v6", "vioif1/if", "vioif1/v4", "default-route"]
        );
        assert_eq!(
            ctx.take_actions(),
            [
                "would run: /usr/sbin/ipadm create-addr -T addrconf vioif0/v6",
                "would run: /usr/sbin/ipadm create-if vioif1",
                "would run: /usr/sbin/ipadm create-addr -T static -a local=10.0.0.5/24 vioif1/v4",
                "would write: /etc/defaultrouter (0644)",
                "would run: /usr/sbin/route -p add default 10.0.0.1",
            ]
        );
    }
}
