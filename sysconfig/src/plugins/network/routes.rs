//! Routes: the IPv4 default route in /etc/defaultrouter, and every route as a persistent
//! `route -p add`.

use std::collections::BTreeMap;

use runner::{Cmd, RunError};

use super::addrs::ip_parts;
use super::{lines, op, skip, unusable, Op};
use crate::plugins::{Ctx, Planned, PluginError};
use crate::schema::Network as Spec;

const ROUTE: &str = "/usr/sbin/route";
const STATIC_ROUTES: &str = "/etc/inet/static_routes";

fn is_link_local6(gw: &str) -> bool {
    matches!(gw.parse::<std::net::IpAddr>(), Ok(std::net::IpAddr::V6(a)) if (a.segments()[0] & 0xffc0) == 0xfe80)
}

/// The default routes and the routes of `spec`, less those already recorded (in
/// /etc/defaultrouter, or by `route -p` in static_routes). A link-local IPv6 gateway is
/// reached over the link of the route's interface (`resolved`), else the first interface
/// with a link (`links_of`).
pub(super) fn plan_routes(
    ctx: &Ctx,
    spec: &Spec,
    resolved: &BTreeMap<String, String>,
    links_of: &[Option<String>],
    out: &mut Vec<Planned<Op>>,
) -> Result<(), PluginError> {
    let static_routes = lines(ctx.read(STATIC_ROUTES)?);
    if let Some(gw) = &spec.default_route {
        if gw.parse::<std::net::Ipv4Addr>().is_err() {
            out.push(unusable(
                "default-route".into(),
                format!("default_route {gw:?} is not an IPv4 address"),
            ));
        } else if ctx
            .read("/etc/defaultrouter")?
            .map(|s| s.trim().to_string())
            .as_deref()
            != Some(gw.as_str())
        {
            out.push(op(
                "network",
                "default-route",
                format!("default route via {gw}"),
                Op::DefaultRoute {
                    gateway: gw.clone(),
                },
            ));
        }
    }
    let mut routes: Vec<(String, String, Option<String>)> = Vec::new();
    if let Some(gw) = &spec.default_route6 {
        if gw.parse::<std::net::Ipv6Addr>().is_ok() {
            routes.push(("default".into(), gw.clone(), None));
        } else {
            out.push(unusable(
                "default-route6".into(),
                format!("default_route6 {gw:?} is not an IPv6 address"),
            ));
        }
    }
    for r in &spec.routes {
        routes.push((
            r.destination.clone(),
            r.gateway.clone(),
            r.interface.clone(),
        ));
    }
    for (n, (dest, gw, on)) in routes.iter().enumerate() {
        let Ok(gip) = gw.parse::<std::net::IpAddr>() else {
            out.push(unusable(
                format!("route-{n}"),
                format!("route to {dest}: gateway {gw:?} is not an IP address"),
            ));
            continue;
        };
        let v6 = gip.is_ipv6();
        if dest != "default" {
            let why = match ip_parts(dest) {
                None => Some(format!("route destination {dest:?} must be ADDRESS/PREFIX")),
                Some((dip, _)) if dip.is_ipv6() != v6 => Some(format!(
                    "route to {dest} via {gw}: the gateway is of another address family"
                )),
                Some(_) => None,
            };
            if let Some(m) = why {
                out.push(unusable(format!("route-{n}"), m));
                continue;
            }
        }
        // route(8): `route -p add [-inet6] destination gateway [-ifp ifname]`; -p also
        // records the arguments in /etc/inet/static_routes.
        let mut args: Vec<String> = Vec::new();
        if v6 {
            args.push("-inet6".into());
        }
        let d = match dest.as_str() {
            "0.0.0.0/0" | "::/0" => "default".to_string(),
            d => d.to_string(),
        };
        args.push(d.clone());
        args.push(gw.clone());
        if v6 && is_link_local6(gw) {
            let link = on.as_ref().and_then(|o| resolved.get(o)).or_else(|| {
                spec.interfaces
                    .iter()
                    .enumerate()
                    .find_map(|(i, _)| links_of[i].as_ref())
            });
            match link {
                Some(l) => {
                    args.push("-ifp".into());
                    args.push(l.clone());
                }
                None => {
                    out.push(skip(
                        format!("route-{n}"),
                        format!(
                            "route to {dest} via link-local {gw}: no interface for it; skipped"
                        ),
                    ));
                    continue;
                }
            }
        }
        if !static_routes.contains(&args.join(" ")) {
            out.push(op(
                "network",
                format!("route-{n}"),
                format!("route to {d} via {gw}"),
                Op::Route { args },
            ));
        }
    }
    Ok(())
}

pub(super) fn add_route(ctx: &Ctx, args: &[String]) -> Result<(), PluginError> {
    match ctx.run(route_add(args)) {
        Ok(_) => Ok(()),
        // A route that is already there is what we want.
        Err(PluginError::Command(RunError::Failed { stderr_tail, .. }))
            if stderr_tail.contains("entry exists") =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

pub fn route_add(args: &[String]) -> Cmd {
    Cmd::new(ROUTE).args(["-p", "add"]).args(args)
}

#[cfg(test)]
mod tests {
    use super::super::Network;
    use crate::plugins::testing;
    use runner::Recorder;
    use serde_json::json;

    #[test]
    fn persistent_routes_already_recorded_are_not_planned_again() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc/inet")).unwrap();
        // route(8) -p keeps the arguments after `add` one route a line in static_routes.
        std::fs::write(
            t.path().join("etc/inet/static_routes"),
            "# File generated by route(8) - do not edit.\n10.0.0.0/8 192.0.2.1\n",
        )
        .unwrap();
        let rec = Recorder::new();
        let d = json!({"network": {"routes": [
            {"destination": "10.0.0.0/8", "gateway": "192.0.2.1"},
            {"destination": "2001:db8:1::/48", "gateway": "2001:db8::1"}]}});
        let changes = testing::plan(&Network, t.path(), &rec, d).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(
            changes[0].summary,
            "route to 2001:db8:1::/48 via 2001:db8::1"
        );
    }
}
