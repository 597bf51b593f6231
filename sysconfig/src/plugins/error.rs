//! What a plugin's plan or apply can fail with. The message of each is what the daemon
//! prints and records for the plugin call or the change, so it names the file, command,
//! key or value concerned.

use runner::RunError;

use crate::rootfs::RootError;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// A desired value that does not fit the plugin's input type. `path` is the key and
    /// the field inside it (`dns.nameservers[1]`); `value` is the offending value as JSON
    /// (password hashes redacted), when it can be found.
    #[error("{path}{}: {message}", shown(.value))]
    Input {
        path: String,
        value: Option<String>,
        message: String,
    },
    /// A desired value of the right type that the plugin cannot use.
    #[error("{what} {value:?} {reason}")]
    Invalid {
        what: String,
        value: String,
        reason: String,
    },
    /// Several problems with a description, all found at once.
    #[error("{}", .0.join("; "))]
    Problems(Vec<String>),
    /// Base64 content of a file that does not decode.
    #[error("{path}: invalid base64: {source}")]
    Base64 {
        path: String,
        #[source]
        source: base64::DecodeError,
    },
    /// A file owner or group that the root's /etc/passwd or /etc/group does not have.
    #[error("no {kind} `{name}` in {file}")]
    NoSuch {
        kind: &'static str,
        name: String,
        file: &'static str,
    },
    /// A file the change needs that the root does not have.
    #[error("{path} is missing")]
    MissingFile { path: String },
    /// A change for something the input does not describe (a change and an input that do
    /// not belong together).
    #[error("{0} is not in the desired state")]
    NotDesired(String),
    /// The `data` of a change does not read back as one of this plugin's changes (a
    /// change not planned by this version of the plugin).
    #[error("change {id}: its data is not a change of this plugin: {source}")]
    ChangeData {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    /// A planned change that cannot be written as JSON.
    #[error("change {id}: cannot encode its data: {source}")]
    Encode {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    /// A command that could not start, failed or timed out.
    #[error(transparent)]
    Command(#[from] RunError),
    /// A file inside the root that could not be read or written (the message names it).
    #[error(transparent)]
    File(#[from] RootError),
    /// What the system is like keeps a change from being made; the message says why.
    #[error("{0}")]
    Failed(String),
}

fn shown(value: &Option<String>) -> String {
    value
        .as_ref()
        .map(|v| format!(" = {v}"))
        .unwrap_or_default()
}
