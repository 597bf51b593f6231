//! Addresses, netmasks and route destinations in the `ADDR/PREFIX` form of the
//! `network` key.

use std::net::IpAddr;

use serde_json::{json, Value};

use super::AddrError;

/// A netmask (IPv4 dotted or IPv6) to its prefix length; `None` for a mask with holes.
pub fn mask_to_prefix(mask: &str) -> Option<u32> {
    match mask.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let ones = bits.leading_ones();
            (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones)
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let ones = bits.leading_ones();
            (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones)
        }
    }
}

/// `ADDR/PREFIX` from an address in CIDR form, `ADDR/NETMASK` form, or an address and a
/// separate netmask (dotted, IPv6 or a prefix length).
pub fn to_cidr(addr: &str, mask: Option<&str>) -> Result<String, AddrError> {
    let (ip, inline) = match addr.split_once('/') {
        Some((ip, m)) => (ip, Some(m)),
        None => (addr, None),
    };
    let parsed: IpAddr = ip.parse().map_err(|_| AddrError::NotIp(ip.into()))?;
    let max = if parsed.is_ipv4() { 32 } else { 128 };
    let Some(m) = inline.or(mask) else {
        return Err(AddrError::NoPrefix(addr.into()));
    };
    let prefix = match m.parse::<u32>() {
        Ok(p) if p <= max => p,
        Ok(_) => {
            return Err(AddrError::PrefixTooLong {
                prefix: m.into(),
                ip: ip.into(),
            })
        }
        Err(_) => mask_to_prefix(m).ok_or_else(|| AddrError::BadNetmask(m.into()))?,
    };
    Ok(format!("{ip}/{prefix}"))
}

pub(super) fn is_v6(addr: &str) -> bool {
    addr.contains(':')
}

/// A route destination as CIDR; `default` per the gateway's family.
pub(super) fn route_dest(dest: &str, mask: Option<&str>, gw: &str) -> Result<String, AddrError> {
    match dest {
        "default" | "" => Ok(if is_v6(gw) { "::/0" } else { "0.0.0.0/0" }.into()),
        "0.0.0.0" if mask.is_none() => Ok("0.0.0.0/0".into()),
        "::" if mask.is_none() => Ok("::/0".into()),
        d => {
            let host = if is_v6(d) { "128" } else { "32" };
            to_cidr(d, mask.or(if d.contains('/') { None } else { Some(host) }))
        }
    }
}

pub(super) fn static_addr(cidr: String) -> Value {
    json!({"kind": "static", "address": cidr})
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    #[test]
    fn masks_and_versions() {
        assert_eq!(mask_to_prefix("255.255.255.0"), Some(24));
        assert_eq!(mask_to_prefix("0.0.0.0"), Some(0));
        assert_eq!(mask_to_prefix("255.0.255.0"), None);
        assert_eq!(mask_to_prefix("ffff:ffff:ffff:ff00::"), Some(56));
        let err = parse("t", "version: 3\n").unwrap_err().to_string();
        assert_eq!(
            err,
            "source t: network-config: version 3 is not supported (1 or 2)"
        );
    }
}
