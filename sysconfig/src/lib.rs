//! sysconfig: first-boot configuration for illumos. Sources produce a desired
//! configuration ([`schema::Desired`]); plugin programs, spoken to over the versioned
//! [`protocol`], plan and apply it; [`state`] keeps what was asked and what was done.

pub mod config;
pub mod daemon;
pub mod pluginhost;
pub mod plugins;
pub mod protocol;
pub mod rootfs;
pub mod schema;
pub mod sources;
pub mod state;
pub mod tomljson;
pub mod yaml;
