//! `/etc/sysconfig.toml`: how the daemon itself behaves. Every key is documented in
//! docs/sysconfig.md; an unknown key is an error that names it.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

pub const DEFAULT_PATH: &str = "/etc/sysconfig.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {error}")]
    Parse {
        path: String,
        #[source]
        error: ParseError,
    },
}

/// Why a configuration file does not read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error(transparent)]
    Syntax(#[from] crate::tomljson::TomlSyntaxError),
    /// An unknown key or a value of the wrong type.
    #[error(transparent)]
    Schema(#[from] serde_json::Error),
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub plugins: Plugins,
    #[serde(default)]
    pub logging: Logging,
    #[serde(default)]
    pub state: State,
    #[serde(default)]
    pub sources: Sources,
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plugins {
    /// Directory searched for `sysconfig-plugin-*` programs.
    #[serde(default = "default_plugin_dir")]
    pub path: PathBuf,
    #[serde(default = "default_describe_timeout")]
    pub describe_timeout_secs: u64,
    #[serde(default = "default_plan_timeout")]
    pub plan_timeout_secs: u64,
    #[serde(default = "default_apply_timeout")]
    pub apply_timeout_secs: u64,
}

fn default_plugin_dir() -> PathBuf {
    "/usr/lib/sysconfig/plugins".into()
}
fn default_describe_timeout() -> u64 {
    10
}
fn default_plan_timeout() -> u64 {
    60
}
fn default_apply_timeout() -> u64 {
    600
}

impl Default for Plugins {
    fn default() -> Self {
        Plugins {
            path: default_plugin_dir(),
            describe_timeout_secs: default_describe_timeout(),
            plan_timeout_secs: default_plan_timeout(),
            apply_timeout_secs: default_apply_timeout(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    /// Standard error, which SMF sends to /var/svc/log/<service>.log.
    #[default]
    Console,
    /// Appended to `logging.file`.
    File,
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    #[serde(default)]
    pub level: Level,
    #[serde(default)]
    pub output: Output,
    #[serde(default = "default_log_file")]
    pub file: PathBuf,
}

fn default_log_file() -> PathBuf {
    "/var/log/sysconfig.log".into()
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            level: Level::Info,
            output: Output::Console,
            file: default_log_file(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Where desired and applied state live (under the -R root).
    #[serde(default = "default_state_dir")]
    pub dir: PathBuf,
    /// How many earlier applied states to keep.
    #[serde(default = "default_history")]
    pub history: usize,
    /// Run the plugins only once per instance id (cloud first boot). Set to false in a
    /// development image so every service restart applies again.
    #[serde(default = "yes")]
    pub once_per_instance: bool,
}

fn default_state_dir() -> PathBuf {
    "/var/lib/sysconfig".into()
}
fn default_history() -> usize {
    10
}
fn yes() -> bool {
    true
}

impl Default for State {
    fn default() -> Self {
        State {
            dir: default_state_dir(),
            history: default_history(),
            once_per_instance: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    /// Sources to consult, highest priority first.
    #[serde(default = "default_order")]
    pub order: Vec<SourceKind>,
    /// Local desired-configuration file (TOML or JSON, by extension), under the root.
    #[serde(default = "default_local")]
    pub local: PathBuf,
    /// NoCloud seed directory, under the root.
    #[serde(default = "default_seed")]
    pub nocloud_seed_dir: PathBuf,
    /// Block devices or image files, or directories of them, searched for volumes
    /// labelled `cidata` (NoCloud) or `config-2` (OpenStack config drive).
    #[serde(default = "default_devices")]
    pub devices: Vec<PathBuf>,
    #[serde(default = "default_ec2")]
    pub ec2_endpoint: String,
    #[serde(default = "default_ec2_timeout")]
    pub ec2_timeout_ms: u64,
    #[serde(default = "default_mdata")]
    pub mdata_get: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Local,
    Nocloud,
    Configdrive,
    Ec2,
    Smartos,
}

fn default_order() -> Vec<SourceKind> {
    vec![
        SourceKind::Local,
        SourceKind::Nocloud,
        SourceKind::Configdrive,
    ]
}
fn default_local() -> PathBuf {
    "/etc/sysconfig.d/desired.toml".into()
}
fn default_seed() -> PathBuf {
    "/var/lib/cloud/seed/nocloud".into()
}
fn default_devices() -> Vec<PathBuf> {
    vec!["/dev/dsk".into()]
}
fn default_ec2() -> String {
    "http://169.254.169.254".into()
}
fn default_ec2_timeout() -> u64 {
    2000
}
fn default_mdata() -> PathBuf {
    "/usr/sbin/mdata-get".into()
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            order: default_order(),
            local: default_local(),
            nocloud_seed_dir: default_seed(),
            devices: default_devices(),
            ec2_endpoint: default_ec2(),
            ec2_timeout_ms: default_ec2_timeout(),
            mdata_get: default_mdata(),
        }
    }
}

impl Config {
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let err = |error: ParseError| ConfigError::Parse {
            path: path.to_string(),
            error,
        };
        let value = crate::tomljson::parse(text).map_err(|e| err(e.into()))?;
        serde_json::from_value(value).map_err(|e| err(e.into()))
    }

    /// Reads `path`; a missing file at the default path means all defaults, a missing
    /// file given explicitly is an error.
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(t) => Self::parse(&t, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_document_config_parses() {
        let c = Config::parse(
            "[plugins]\npath = \"/repo/target/release\"\n\n[logging]\nlevel = \"debug\"\noutput = \"console\"\n",
            "x",
        )
        .unwrap();
        assert_eq!(c.plugins.path, PathBuf::from("/repo/target/release"));
        assert_eq!(c.logging.level, Level::Debug);
        assert_eq!(c.plugins.apply_timeout_secs, 600);
        assert!(c.state.once_per_instance);
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = Config::parse("[plugins]\npaht = \"/x\"\n", "/etc/sysconfig.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/etc/sysconfig.toml:"), "{err}");
        assert!(err.contains("unknown field `paht`"), "{err}");
        let err = Config::parse("socket_path = \"/x\"\n", "f")
            .unwrap_err()
            .to_string();
        assert!(err.contains("socket_path"), "{err}");
    }

    #[test]
    fn missing_default_file_is_defaults_but_missing_explicit_file_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("none.toml");
        assert_eq!(Config::load(&p, false).unwrap(), Config::default());
        assert!(Config::load(&p, true).is_err());
    }
}
