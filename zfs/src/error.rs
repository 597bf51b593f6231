use runner::RunError;

/// What can go wrong with a ZFS operation.
#[derive(Debug, thiserror::Error)]
pub enum ZfsError {
    /// Refused before running anything: the name would be misread by `zfs`/`zpool`
    /// (for example taken as an option) or is not a name of the expected kind.
    #[error("invalid {kind} name `{name}`: {why}")]
    InvalidName {
        kind: &'static str,
        name: String,
        why: &'static str,
    },

    /// The command failed and a follow-up query showed that its target does not exist.
    #[error("`{name}` does not exist")]
    NotFound { name: String },

    /// The command failed and a follow-up query showed that its target already exists.
    #[error("`{name}` already exists")]
    AlreadyExists { name: String },

    /// Options that contradict each other, refused before running anything.
    #[error("invalid options: {0}")]
    InvalidOptions(&'static str),

    #[error(transparent)]
    Run(#[from] RunError),

    #[error("unexpected output from `{cmd}`: {detail}")]
    Parse { cmd: String, detail: String },

    /// `zpool export` kept failing while the pool was still imported.
    #[error("pool `{pool}` could not be exported after {attempts} attempts")]
    ExportBusy {
        pool: String,
        attempts: u32,
        #[source]
        last: RunError,
    },
}

pub type Result<T, E = ZfsError> = std::result::Result<T, E>;
