#!/usr/bin/env python3
"""What cloud-init makes of network metadata, in the normalized form the differential test
(tests/cloudinit_network.rs) compares with sysconfig's desired state.

Usage: cloudinit_network.py FILE...   (FILE: *.network-config, *.network_data.json, or
*.smartos.json: SmartOS metadata keys and values)
Prints one JSON object, file name -> meaning. Exits 3 with "skipped: ..." when cloud-init
is not installed.

cloud-init's own code does the reading: PyYAML's safe_load as cloud-init loads
network-config, `cloudinit.sources.helpers.openstack.convert_net_json` for
network_data.json, `DataSourceSmartOS.convert_smartos_network_data` for SmartOS, then `cloudinit.net.network_state.parse_net_config_data`.
"""
import ipaddress
import json
import logging
import os
import sys
import warnings

warnings.simplefilter("ignore")
logging.disable(logging.CRITICAL)

try:
    import yaml
    from cloudinit.net import network_state
    from cloudinit.sources.DataSourceSmartOS import convert_smartos_network_data
    from cloudinit.sources.helpers import openstack
except ImportError as e:  # pragma: no cover - depends on the host
    print(f"skipped: cloud-init is not installed ({e})")
    sys.exit(3)


def cidr(addr, prefix=None):
    if prefix is None and "/" not in str(addr):
        return str(ipaddress.ip_address(addr))
    text = str(addr) if prefix is None else f"{addr}/{prefix}"
    return str(ipaddress.ip_interface(text))


def net(network, prefix):
    return str(ipaddress.ip_network(f"{network}/{prefix}", strict=False))


def default_for(gw):
    return "::/0" if ipaddress.ip_address(gw).version == 6 else "0.0.0.0/0"


def meaning(ns, macs):
    """`macs`: each physical interface's own MAC as the configuration gave it. cloud-init
    copies a bond's parameters into its members (`handle_bond`, "copy in bond config into
    slave"), a bond `mac_address` among them, so after parsing every member of a bond with
    a MAC carries the bond's; the metadata's link is still the one with its own MAC."""
    ifaces = {i["name"]: i for i in ns.iter_interfaces()}
    keys = {}

    def key(name):
        if name in keys:
            return keys[name]
        i = ifaces[name]
        t = i["type"]
        if t == "physical":
            mac = macs.get(name) or i.get("mac_address")
            k = mac.lower() if mac else "name:" + name
        elif t == "bond":
            members = sorted(key(n) for n, m in ifaces.items() if m.get("bond-master") == name)
            k = "bond(" + ",".join(members) + ")"
        elif t == "vlan":
            k = "vlan(%s,%s)" % (key(i["vlan-raw-device"]), i["vlan_id"])
        else:
            k = t + ":" + name
        keys[name] = k
        return k

    out_ifaces = {}
    routes = set()
    nameservers = set(ns.dns_nameservers)
    search = set(ns.dns_searchdomains)
    for name, i in ifaces.items():
        if i["type"] not in ("physical", "bond", "vlan"):
            continue
        addrs, dhcp4, dhcp6 = [], False, False
        for s in i.get("subnets", []):
            t = s["type"]
            if t in ("dhcp", "dhcp4"):
                dhcp4 = True
            elif t in ("dhcp6", "ipv6_slaac", "ipv6_dhcpv6-stateless", "ipv6_dhcpv6-stateful"):
                dhcp6 = True
            elif t in ("static", "static6"):
                addrs.append(cidr(s["address"], s.get("prefix")))
                if s.get("gateway"):
                    routes.add((default_for(s["gateway"]), str(ipaddress.ip_address(s["gateway"]))))
            for r in s.get("routes", []):
                routes.add((net(r["network"], r["prefix"]), str(ipaddress.ip_address(r["gateway"]))))
            nameservers.update(s.get("dns_nameservers", []))
            search.update(s.get("dns_search", []))
        out_ifaces[key(name)] = {
            "addresses": sorted(addrs),
            "dhcp4": dhcp4,
            "dhcp6": dhcp6,
            "mtu": i.get("mtu"),
        }
    for r in ns.iter_routes():
        routes.add((net(r["network"], r["prefix"]), str(ipaddress.ip_address(r["gateway"]))))
    return {
        "interfaces": out_ifaces,
        "routes": sorted([list(r) for r in routes]),
        "nameservers": sorted(str(ipaddress.ip_address(n)) for n in nameservers),
        "search": sorted(search),
    }


def read(path):
    with open(path) as f:
        text = f.read()
    if path.endswith(".smartos.json"):
        doc = json.loads(text)
        cfg = convert_smartos_network_data(
            network_data=doc["sdc:nics"],
            dns_servers=doc.get("sdc:resolvers"),
            dns_domain=doc.get("sdc:dns_domain"),
            routes=doc.get("sdc:routes"),
        )
    elif path.endswith(".json"):
        doc = json.loads(text)
        macs = {}
        for link in doc.get("links", []):
            for k in ("ethernet_mac_address", "vlan_mac_address"):
                if link.get(k):
                    macs.setdefault(link[k].lower(), "nic%d" % len(macs))
        cfg = openstack.convert_net_json(doc, known_macs=macs)
    else:
        cfg = yaml.safe_load(text)
        if "network" in cfg:
            cfg = cfg["network"]
    own = {}
    if cfg.get("version") == 1:
        for c in cfg.get("config", []):
            if c.get("type") == "physical" and c.get("mac_address"):
                own[c["name"]] = c["mac_address"]
    return meaning(network_state.parse_net_config_data(cfg, skip_broken=False), own)


def main():
    print(json.dumps({os.path.basename(p): read(p) for p in sys.argv[1:]}, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
