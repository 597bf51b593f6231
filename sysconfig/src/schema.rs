//! The desired configuration, schema version 1: what every source produces and what the
//! plugins receive, one top-level key per concern. Unknown keys are errors. The JSON
//! Schema (`sysconfig schema`) is generated from these types.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;

fn schema_version() -> u32 {
    SCHEMA_VERSION
}

fn yes() -> bool {
    true
}

/// The whole desired configuration of one machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Desired {
    /// Schema version of this document (1).
    #[serde(default = "schema_version")]
    pub schema_version: u32,
    /// Node name, written to /etc/nodename and /etc/inet/hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<User>,
    /// Groups to create (`groupadd`) before the users, with members added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Group>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
    /// A zoneinfo name such as `UTC` or `Europe/Zurich`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileSpec>,
    /// Files written after the users and groups exist (cloud-init's `write_files` with
    /// `defer: true`), by the users plugin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deferred_files: Vec<FileSpec>,
    /// Non-global zones to configure, install and boot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<Zone>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    #[serde(default)]
    pub nameservers: Vec<String>,
    #[serde(default)]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// IPv4 gateway for the default route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_route: Option<String>,
    /// IPv6 gateway for the default route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_route6: Option<String>,
    /// Other static routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// What the metadata asked for that illumos cannot do, by name; reported in the plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// `ADDRESS/PREFIX` (IPv4 or IPv6).
    pub destination: String,
    pub gateway: String,
    /// The `id` of the interface the route belongs to (used for IPv6 link-local gateways).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// A NIC.
    #[default]
    Physical,
    /// A link aggregation (`dladm create-aggr`) over `members`.
    Bond,
    /// A VLAN link (`dladm create-vlan`) with `vlan_id` over `vlan_link`.
    Vlan,
}

fn is_physical(k: &LinkKind) -> bool {
    *k == LinkKind::Physical
}

/// One NIC, aggregation or VLAN. A NIC is found by MAC address (`mac`), or by its illumos
/// link name (`name`); the metadata's own name for it (`id`, often a Linux name such as
/// `eth0`) is used as the link only when the system has a link of that name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    /// The metadata's name for this interface; bonds and VLANs refer to interfaces by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// illumos link name (e.g. `vioif0`); for a bond or VLAN, the link to create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// MAC address, any case, with or without leading zeros.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "is_physical")]
    pub kind: LinkKind,
    /// Bond: the `id`s (or link names) of the member interfaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// Bond: LACP mode, `off` (default), `active` or `passive` (dladm create-aggr -L).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lacp: Option<String>,
    /// Bond: LACP timer, `short` or `long` (dladm create-aggr -T).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lacp_timer: Option<String>,
    /// Bond: load-spreading policy such as `L2`, `L3,L4` (dladm create-aggr -P).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// VLAN: the `id` (or link name) of the link it runs over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_link: Option<String>,
    /// VLAN: the VLAN id, 1 to 4094.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_id: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub addresses: Vec<Address>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AddressKind {
    Dhcp,
    Static,
    Addrconf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub kind: AddressKind,
    /// `ADDRESS/PREFIX` for static addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The part after `/` of the ipadm address object (default `v4`, `dhcp`, `v6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A local user. `password_hash` is a crypt(3) string; it is never logged.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Primary group name or number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gecos: Option<String>,
    /// Default `/export/home/NAME` (`/home` is the automounter's on illumos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_authorized_keys: Vec<String>,
    /// RBAC profiles (e.g. `Primary Administrator`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// No password login (cloud-init's `lock_passwd`): the shadow password field becomes
    /// `NP`, which `passwd -N` sets, so SSH keys still log in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lock_password: bool,
    /// sudo rules (`ALL=(ALL) NOPASSWD:ALL`), written to /etc/sudoers.d.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sudo: Vec<String>,
}

/// A local group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    /// Users added to the group once they exist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("uid", &self.uid)
            .field("groups", &self.groups)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .field("ssh_authorized_keys", &self.ssh_authorized_keys.len())
            .finish()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<Pool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<Dataset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<Swap>,
    /// Expand the root pool onto its grown disk (`zpool online -e`).
    #[serde(default)]
    pub grow_root_pool: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    #[default]
    Stripe,
    Mirror,
    Raidz,
    Raidz2,
    Raidz3,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub name: String,
    #[serde(default)]
    pub layout: Layout,
    pub disks: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Swap {
    /// zfs size, e.g. `2G`.
    pub size: String,
    /// The volume (default `rpool/swap`).
    #[serde(default = "default_swap_volume")]
    pub volume: String,
}

fn default_swap_volume() -> String {
    "rpool/swap".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    #[default]
    Plain,
    Base64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub path: String,
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub encoding: Encoding,
    /// Octal mode, default `0644`.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// User name or number, default `root`.
    #[serde(default = "default_owner")]
    pub owner: String,
    /// Group name or number, default `root`.
    #[serde(default = "default_owner")]
    pub group: String,
    /// Leave an existing file alone.
    #[serde(default = "yes")]
    pub overwrite: bool,
    /// Add the content at the end of an existing file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub append: bool,
}

fn default_mode() -> String {
    "0644".into()
}

fn default_owner() -> String {
    "root".into()
}

/// A non-global zone, described as zonecfg would configure it. The zones plugin checks
/// every field (names, paths, addresses) before anything runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// Zone name: a letter or digit, then letters, digits, `-`, `_` and `.`; at most 63
    /// characters; not `global`, not starting with `SUNW`.
    pub name: String,
    /// Zone brand (default `ipkg`, OpenIndiana's), e.g. `nlipkg`, `lipkg`, `sparse`,
    /// `pkgsrc`, `lx`, `bhyve`.
    #[serde(default = "default_brand")]
    pub brand: String,
    /// Absolute path of the zone's files, default `/zones/NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zonepath: Option<String>,
    /// Boot the zone with the global zone (`svc:/system/zones:default`).
    #[serde(default = "yes")]
    pub autoboot: bool,
    #[serde(default)]
    pub ip_type: IpType,
    /// `net` resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<ZoneNet>,
    /// ZFS datasets delegated to the zone (`add dataset`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<String>,
    /// A zone image (tarball or `zfs send` stream, as image-builder's `zone` target makes
    /// them) installed with `zoneadm install -a IMAGE`; absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// More arguments for `zoneadm install` (brand options such as `-e PKG`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub install_args: Vec<String>,
    /// Boot the zone now once it is installed.
    #[serde(default = "yes")]
    pub boot: bool,
}

fn default_brand() -> String {
    "ipkg".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum IpType {
    /// The zone has its own IP stack on its own links (`ip-type=exclusive`).
    #[default]
    Exclusive,
    /// The zone's addresses live on the global zone's interfaces (`ip-type=shared`).
    Shared,
}

/// One `net` resource. Exclusive-IP: `physical` (a link the zone gets, such as a VNIC),
/// optionally `allowed_address`, `defrouter` (only with an `allowed_address` on the same
/// link) and `global_nic`. Shared-IP: `physical` (a global-zone interface), `address` and
/// optionally `defrouter`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ZoneNet {
    pub physical: String,
    /// Shared-IP only: `ADDRESS[/PREFIX]` (IPv6 needs the prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Exclusive-IP only: the one address the zone may configure on this link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_address: Option<String>,
    /// Default router, an IP address without prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defrouter: Option<String>,
    /// Exclusive-IP only: create the `physical` VNIC on this link when the zone boots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_nic: Option<String>,
}

impl Desired {
    /// The JSON Schema of the desired configuration.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Desired)).unwrap_or_default()
    }

    /// The document as a JSON object keyed by top-level key.
    pub fn to_map(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in_and_unknown_keys_are_named() {
        let d: Desired = serde_json::from_str(r#"{"files":[{"path":"/etc/motd"}]}"#).unwrap();
        assert_eq!(d.schema_version, 1);
        assert_eq!(d.files[0].mode, "0644");
        assert_eq!(d.files[0].owner, "root");
        assert!(d.files[0].overwrite);
        let err = serde_json::from_str::<Desired>(r#"{"hostnme":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `hostnme`"), "{err}");
    }

    #[test]
    fn schema_lists_every_top_level_key() {
        let schema = Desired::json_schema();
        let props = schema["properties"].as_object().unwrap();
        let full = Desired {
            hostname: Some("h".into()),
            dns: Some(Dns::default()),
            network: Some(Network::default()),
            users: vec![User::default()],
            groups: vec![Group::default()],
            deferred_files: vec![serde_json::from_str(r#"{"path":"/y"}"#).unwrap()],
            storage: Some(Storage::default()),
            timezone: Some("UTC".into()),
            files: vec![serde_json::from_str(r#"{"path":"/x"}"#).unwrap()],
            zones: vec![serde_json::from_str(r#"{"name":"z"}"#).unwrap()],
            ..Desired::default()
        };
        for key in full.to_map().keys() {
            assert!(props.contains_key(key), "schema misses {key}");
        }
        assert_eq!(props.len(), full.to_map().len());
    }

    #[test]
    fn debug_output_hides_the_password_hash() {
        let u = User {
            name: "a".into(),
            password_hash: Some("$6$salt$secret".into()),
            ..User::default()
        };
        assert!(!format!("{u:?}").contains("secret"));
    }
}
