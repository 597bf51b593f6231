#!/usr/bin/env python3
"""Writes the network metadata corpus beside this script: cloud-init network-config
version 1 and 2 documents (dumped with PyYAML, as the tools that make NoCloud seeds do)
and OpenStack network_data.json documents, in the shapes their producers emit.

Run it again after changing a document here: `python3 generate.py` (or
`generate.py OUTDIR` to write elsewhere; tests/cloudinit_network.rs checks that the
committed files are what this script writes).
"""
import json
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))

V1 = {}
V2 = {}
OS = {}

# Proxmox VE's cloud-init drive: version 1, `physical` with the NIC's MAC, static subnets
# with dotted netmasks, then one `nameserver` entry.
V1["proxmox-static"] = {
    "version": 1,
    "config": [
        {"type": "physical", "name": "eth0", "mac_address": "bc:24:11:5e:3a:01",
         "subnets": [
             {"type": "static", "address": "192.168.10.50", "netmask": "255.255.255.0",
              "gateway": "192.168.10.1"},
             {"type": "static6", "address": "2001:db8:10::50/64", "gateway": "2001:db8:10::1"},
         ]},
        {"type": "nameserver", "address": ["192.168.10.1", "2001:db8:10::1"],
         "search": ["example.com"]},
    ],
}
V1["proxmox-dhcp-slaac"] = {
    "version": 1,
    "config": [
        {"type": "physical", "name": "eth0", "mac_address": "bc:24:11:5e:3a:02",
         "subnets": [{"type": "dhcp4"}, {"type": "ipv6_slaac"}]},
        {"type": "physical", "name": "eth1", "mac_address": "bc:24:11:5e:3a:03",
         "subnets": [{"type": "dhcp"}, {"type": "dhcp6"}]},
        {"type": "nameserver", "address": ["9.9.9.9"], "search": ["lab.example", "example.com"]},
    ],
}
V1["cidr-subnet-routes-dns"] = {
    "version": 1,
    "config": [
        {"type": "physical", "name": "ens3", "mac_address": "52:54:00:12:34:56", "mtu": 1450,
         "subnets": [
             {"type": "static", "address": "10.20.0.5/24", "gateway": "10.20.0.1",
              "dns_nameservers": ["10.20.0.2", "10.20.0.3"], "dns_search": ["corp.example"],
              "routes": [
                  {"network": "172.16.0.0", "netmask": "255.240.0.0", "gateway": "10.20.0.254"},
                  {"network": "192.168.99.0", "netmask": "255.255.255.0", "gateway": "10.20.0.253"},
              ]},
         ]},
    ],
}
V1["ipv6-only-static"] = {
    "version": 1,
    "config": [
        {"type": "physical", "name": "eth0", "mac_address": "02:00:00:aa:00:01",
         "subnets": [
             {"type": "static6", "address": "2001:db8:600::10", "netmask": "64",
              "gateway": "2001:db8:600::1"},
             {"type": "static", "address": "2001:db8:601::10/56"},
         ]},
        {"type": "nameserver", "address": ["2001:4860:4860::8888"]},
    ],
}
V1["global-routes"] = {
    "version": 1,
    "config": [
        {"type": "physical", "name": "eth0", "mac_address": "fa:16:3e:20:00:01",
         "subnets": [{"type": "static", "address": "198.51.100.20", "netmask": "255.255.255.0"}]},
        {"type": "route", "destination": "0.0.0.0/0", "gateway": "198.51.100.1", "metric": 100},
        {"type": "route", "destination": "10.0.0.0/8", "gateway": "198.51.100.254"},
        {"type": "route", "destination": "2001:db8:ffff::/48", "gateway": "2001:db8:1::1"},
    ],
}
V1["bond-lacp"] = {
    "version": 1,
    "config": [
        {"type": "physical", "name": "eth0", "mac_address": "aa:bb:cc:00:00:01"},
        {"type": "physical", "name": "eth1", "mac_address": "aa:bb:cc:00:00:02"},
        {"type": "bond", "name": "bond0", "mac_address": "aa:bb:cc:00:00:01",
         "bond_interfaces": ["eth0", "eth1"],
         "params": {"bond-mode": "802.3ad", "bond-xmit-hash-policy": "layer3+4",
                    "bond-miimon": 100},
         "subnets": [{"type": "static", "address": "203.0.113.10/24", "gateway": "203.0.113.1"}]},
    ],
}
V1["vlan"] = {
    "version": 1,
    "config": [
        {"type": "physical", "name": "eth0", "mac_address": "aa:bb:cc:00:01:01",
         "subnets": [{"type": "dhcp"}]},
        {"type": "vlan", "name": "eth0.42", "vlan_link": "eth0", "vlan_id": 42,
         "subnets": [{"type": "static", "address": "10.42.0.2", "netmask": "255.255.0.0"}]},
    ],
}
V1["bond-vlan"] = {
    "version": 1,
    "config": [
        {"type": "physical", "name": "eth0", "mac_address": "aa:bb:cc:00:02:01"},
        {"type": "physical", "name": "eth1", "mac_address": "aa:bb:cc:00:02:02"},
        {"type": "bond", "name": "bond0", "bond_interfaces": ["eth0", "eth1"],
         "params": {"bond-mode": "balance-xor", "bond-xmit-hash-policy": "layer2"}},
        {"type": "vlan", "name": "bond0.100", "vlan_link": "bond0", "vlan_id": 100,
         "subnets": [{"type": "static", "address": "10.100.0.9/24", "gateway": "10.100.0.1"}]},
    ],
}
V1["two-nics-mtu"] = {
    "version": 1,
    "config": [
        {"type": "physical", "name": "eth0", "mac_address": "52:54:00:00:10:01",
         "subnets": [{"type": "dhcp"}]},
        {"type": "physical", "name": "eth1", "mac_address": "52:54:00:00:10:02", "mtu": 9000,
         "subnets": [{"type": "static", "address": "10.99.0.2", "netmask": "255.255.255.0"}]},
    ],
}
V1["bridge-warned"] = {
    "version": 1,
    "config": [
        {"type": "physical", "name": "eth0", "mac_address": "52:54:00:00:20:01",
         "subnets": [{"type": "dhcp"}]},
        {"type": "physical", "name": "eth1", "mac_address": "52:54:00:00:20:02"},
        {"type": "bridge", "name": "br0", "bridge_interfaces": ["eth1"],
         "params": {"bridge_stp": "off"}},
    ],
}
V1["active-backup-bond"] = {
    "version": 1,
    "config": [
        {"type": "physical", "name": "eno1", "mac_address": "3c:ec:ef:00:00:01"},
        {"type": "physical", "name": "eno2", "mac_address": "3c:ec:ef:00:00:02"},
        {"type": "bond", "name": "bond0", "bond_interfaces": ["eno1", "eno2"],
         "params": {"bond-mode": "active-backup"},
         "subnets": [{"type": "dhcp4"}]},
    ],
}

# netplan-style version 2: ethernets matched by MAC with set-name, as cloud-init's EC2,
# Azure and OpenStack datasources generate and netplan's examples show.
V2["ec2-dhcp"] = {
    "version": 2,
    "ethernets": {
        "eth0": {"match": {"macaddress": "0e:5a:1b:2c:3d:4e"}, "set-name": "eth0",
                 "dhcp4": True, "dhcp6": True},
        "eth1": {"match": {"macaddress": "0e:5a:1b:2c:3d:4f"}, "set-name": "eth1",
                 "dhcp4": True, "dhcp4-overrides": {"route-metric": 200}},
    },
}
V2["static-gateways"] = {
    "version": 2,
    "ethernets": {
        "id0": {"match": {"macaddress": "52:54:00:6b:3c:58"}, "set-name": "ens3",
                "addresses": ["192.0.2.10/24", "2001:db8:1::10/64"],
                "gateway4": "192.0.2.1", "gateway6": "2001:db8:1::1",
                "nameservers": {"addresses": ["192.0.2.53", "2001:db8:1::53"],
                                "search": ["example.org"]}},
    },
}
V2["routes"] = {
    "version": 2,
    "ethernets": {
        "lan": {"match": {"macaddress": "52:54:00:6b:3c:59"},
                "addresses": ["10.10.10.2/24", "2001:db8:a::2/64"],
                "routes": [
                    {"to": "0.0.0.0/0", "via": "10.10.10.1"},
                    {"to": "172.31.0.0/16", "via": "10.10.10.254", "metric": 100},
                    {"to": "::/0", "via": "2001:db8:a::1"},
                    {"to": "2001:db8:b::/48", "via": "2001:db8:a::fe"},
                ]},
    },
}
V2["bond"] = {
    "version": 2,
    "ethernets": {
        "eno1": {"match": {"macaddress": "3c:ec:ef:10:00:01"}},
        "eno2": {"match": {"macaddress": "3c:ec:ef:10:00:02"}},
    },
    "bonds": {
        "bond0": {"interfaces": ["eno1", "eno2"],
                  "parameters": {"mode": "802.3ad", "lacp-rate": "fast",
                                 "transmit-hash-policy": "layer2+3",
                                 "mii-monitor-interval": 100},
                  "addresses": ["198.51.100.5/24"], "gateway4": "198.51.100.1",
                  "nameservers": {"addresses": ["198.51.100.53"]}},
    },
}
V2["vlans"] = {
    "version": 2,
    "ethernets": {
        "mainif": {"match": {"macaddress": "de:ad:be:ef:ca:fe"}, "set-name": "mainif",
                   "addresses": ["10.3.0.5/23"], "gateway4": "10.3.0.1",
                   "nameservers": {"addresses": ["8.8.8.8", "8.8.4.4"],
                                   "search": ["example.com"]}},
    },
    "vlans": {
        "vlan15": {"id": 15, "link": "mainif", "addresses": ["10.3.99.5/24"]},
        "vlan10": {"id": 10, "link": "mainif", "addresses": ["10.3.98.5/24"],
                   "nameservers": {"addresses": ["127.0.0.1"], "search": ["domain1.example.com"]}},
    },
}
V2["bridge-warned"] = {
    "version": 2,
    "ethernets": {
        "enp3s0": {"match": {"macaddress": "52:54:00:30:00:01"}, "dhcp4": False},
        "enp4s0": {"match": {"macaddress": "52:54:00:30:00:02"}, "dhcp4": True},
    },
    "bridges": {
        "br0": {"interfaces": ["enp3s0"], "dhcp4": True,
                "parameters": {"stp": False, "forward-delay": 0}},
    },
}
V2["multi-nic-mtu"] = {
    "version": 2,
    "ethernets": {
        "public": {"match": {"macaddress": "52:54:00:40:00:01"}, "dhcp4": True, "mtu": 1500},
        "private": {"match": {"macaddress": "52:54:00:40:00:02"}, "mtu": 9000,
                    "addresses": ["10.200.0.7/16"]},
    },
}
V2["linux-only-keys"] = {
    "version": 2,
    "renderer": "networkd",
    "ethernets": {
        "id0": {"match": {"macaddress": "52:54:00:50:00:01"}, "set-name": "eth0",
                "addresses": ["192.0.2.77/24", "2001:db8:77::7/64"],
                "gateway4": "192.0.2.1", "optional": True, "wakeonlan": True,
                "accept-ra": False, "link-local": ["ipv6"]},
    },
}

# OpenStack config drive network_data.json (Nova's netutils shapes): links of type
# ovs/phy/bond/vlan, networks of type ipv4/ipv6/ipv4_dhcp/ipv6_dhcp/ipv6_slaac with
# routes, and dns services.
OS["ipv4-static-routes"] = {
    "links": [{"id": "tap8b2a1c3d-4e", "type": "ovs", "vif_id": "8b2a1c3d-4e5f-4a6b",
               "ethernet_mac_address": "fa:16:3e:9c:bf:3d", "mtu": 1450}],
    "networks": [{"id": "network0", "type": "ipv4", "link": "tap8b2a1c3d-4e",
                  "ip_address": "10.0.0.13", "netmask": "255.255.255.0",
                  "routes": [
                      {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"},
                      {"network": "10.128.0.0", "netmask": "255.192.0.0", "gateway": "10.0.0.254"},
                  ],
                  "network_id": "da5bb487-5193-4a65-a3df-4a0055a8c0d7"}],
    "services": [{"type": "dns", "address": "8.8.8.8"}, {"type": "dns", "address": "8.8.4.4"}],
}
OS["ipv6-static-netmask"] = {
    "links": [{"id": "tap1", "type": "ovs", "ethernet_mac_address": "fa:16:3e:00:06:01",
               "mtu": 1500}],
    "networks": [
        {"id": "network0", "type": "ipv4", "link": "tap1", "ip_address": "192.168.0.5",
         "netmask": "255.255.255.0",
         "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.168.0.1"}]},
        {"id": "network1", "type": "ipv6", "link": "tap1", "ip_address": "2001:db8:6::5",
         "netmask": "ffff:ffff:ffff:ffff::",
         "routes": [{"network": "::", "netmask": "::", "gateway": "2001:db8:6::1"},
                    {"network": "2001:db8:7::", "netmask": "ffff:ffff:ffff::",
                     "gateway": "2001:db8:6::fe"}]},
    ],
    "services": [{"type": "dns", "address": "2001:4860:4860::8844"}],
}
OS["dhcp-slaac"] = {
    "links": [{"id": "tap2", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:07:01"}],
    "networks": [
        {"id": "network0", "type": "ipv4_dhcp", "link": "tap2", "network_id": "n0"},
        {"id": "network1", "type": "ipv6_slaac", "link": "tap2", "network_id": "n1"},
    ],
    "services": [],
}
OS["ipv6-dhcp"] = {
    "links": [{"id": "tap3", "type": "vif", "ethernet_mac_address": "fa:16:3e:00:08:01"}],
    "networks": [
        {"id": "network0", "type": "ipv6_dhcp", "link": "tap3"},
        {"id": "network1", "type": "ipv4_dhcp", "link": "tap3"},
    ],
}
OS["bond-vlan"] = {
    "links": [
        {"id": "interface0", "type": "phy", "ethernet_mac_address": "0c:c4:7a:34:6e:3c",
         "mtu": 9000},
        {"id": "interface1", "type": "phy", "ethernet_mac_address": "0c:c4:7a:34:6e:3d",
         "mtu": 9000},
        {"id": "bond0", "type": "bond", "bond_links": ["interface0", "interface1"],
         "ethernet_mac_address": "0c:c4:7a:34:6e:3c", "bond_mode": "802.3ad",
         "bond_xmit_hash_policy": "layer3+4", "bond_miimon": 100},
        {"id": "vlan0", "type": "vlan", "vlan_link": "bond0", "vlan_id": 101,
         "vlan_mac_address": "0c:c4:7a:34:6e:3c"},
    ],
    "networks": [
        {"id": "network0", "type": "ipv4", "link": "bond0", "ip_address": "10.184.0.244",
         "netmask": "255.255.240.0",
         "routes": [{"network": "10.0.0.0", "netmask": "255.0.0.0", "gateway": "10.184.0.1"}]},
        {"id": "publicnet-ipv4", "type": "ipv4", "link": "vlan0", "ip_address": "23.253.157.244",
         "netmask": "255.255.255.0",
         "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "23.253.157.1"}]},
    ],
    "services": [{"type": "dns", "address": "69.20.0.164"}, {"type": "dns", "address": "69.20.0.196"}],
}
OS["two-links"] = {
    "links": [
        {"id": "tapa", "type": "ovs", "ethernet_mac_address": "fa:16:3e:0a:00:01", "mtu": 1442},
        {"id": "tapb", "type": "ovs", "ethernet_mac_address": "fa:16:3e:0b:00:01", "mtu": 1442},
    ],
    "networks": [
        {"id": "network0", "type": "ipv4_dhcp", "link": "tapa"},
        {"id": "network1", "type": "ipv4", "link": "tapb", "ip_address": "172.24.4.10",
         "netmask": "255.255.255.0", "routes": [], "dns_nameservers": ["172.24.4.1"]},
    ],
    "services": [{"type": "dns", "address": "172.24.4.1"}],
}

# SmartOS / Triton metadata, as mdata-get prints the keys cloud-init's DataSourceSmartOS
# reads for the network (sdc:nics, sdc:resolvers, sdc:dns_domain, sdc:routes): one
# JSON object of key -> value; the JSON keys' values are the JSON mdata-get prints.
SDC = {}
SDC["kvm-two-nics"] = {
    "sdc:nics": [
        {"interface": "net0", "mac": "90:b8:d0:f5:e4:f5", "vlan_id": 324, "nic_tag": "external",
         "gateway": "8.12.42.1", "gateways": ["8.12.42.1"], "netmask": "255.255.255.0",
         "ip": "8.12.42.102", "ips": ["8.12.42.102/24"], "mtu": 1500, "primary": True,
         "network_uuid": "992fc7ce-6aac-4b74-aed6-7b9d2c6c0bfe"},
        {"interface": "net1", "mac": "90:b8:d0:a5:ff:cd", "vlan_id": 600, "nic_tag": "internal",
         "netmask": "255.255.255.0", "ip": "192.168.128.93", "ips": ["192.168.128.93/24"],
         "mtu": 8500, "network_uuid": "1d7a2b1c-0cd1-4a10-9d38-ff1c4f1d4a89"},
    ],
    "sdc:resolvers": ["8.8.8.8", "8.8.4.4"],
    "sdc:dns_domain": "joyent.example",
    "sdc:routes": [
        {"linklocal": False, "dst": "10.99.0.0/16", "gateway": "192.168.128.1"},
        {"linklocal": False, "dst": "172.30.5.0/24", "gateway": "192.168.128.2"},
    ],
}
SDC["dual-stack-dhcp"] = {
    "sdc:nics": [
        {"interface": "net0", "mac": "90:b8:d0:00:00:01", "ips": ["10.0.5.9/24", "2001:db8:5::9/64"],
         "gateways": ["10.0.5.1", "2001:db8:5::1"], "primary": True, "mtu": 1500},
        {"interface": "net1", "mac": "90:b8:d0:00:00:02", "ips": ["dhcp"], "mtu": 1500},
    ],
    "sdc:resolvers": ["10.0.5.1"],
}
SDC["non-primary-gateway"] = {
    "sdc:nics": [
        {"interface": "net0", "mac": "90:b8:d0:00:10:01", "ips": ["10.1.0.9/16"],
         "gateways": ["10.1.0.1"], "primary": False},
        {"interface": "net1", "mac": "90:b8:d0:00:10:02", "ips": ["172.16.9.9/24"],
         "gateways": ["172.16.9.1"], "primary": True},
    ],
}


OUT = sys.argv[1] if len(sys.argv) > 1 else HERE


def write(name, text):
    with open(os.path.join(OUT, name), "w") as f:
        f.write(text)


def main():
    for i, (name, doc) in enumerate(sorted(V1.items())):
        # Every other document in flow style, as some producers write nested lists.
        flow = None if i % 2 else False
        write(f"v1-{name}.network-config", yaml.safe_dump(doc, default_flow_style=flow, sort_keys=False))
    for i, (name, doc) in enumerate(sorted(V2.items())):
        # NoCloud seeds often wrap version 2 in a top-level `network:` key.
        body = {"network": doc} if i % 2 else doc
        write(f"v2-{name}.network-config", yaml.safe_dump(body, default_flow_style=False, sort_keys=False))
    for name, doc in sorted(OS.items()):
        write(f"os-{name}.network_data.json", json.dumps(doc, indent=2) + "\n")
    for name, doc in sorted(SDC.items()):
        write(f"sdc-{name}.smartos.json", json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
