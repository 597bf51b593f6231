//! Why a build failed.

use crate::steps::StepError;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the template has {0} error(s); nothing was built")]
    Invalid(usize),
    #[error("{0}")]
    Preflight(String),
    #[error(transparent)]
    Zfs(#[from] zfs::ZfsError),
    #[error(transparent)]
    Device(#[from] super::device::DeviceError),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another build holds {lock}: {holder}")]
    Locked { lock: String, holder: String },
    #[error("step {index} ({t}, {location}) failed: {source}")]
    Step {
        index: usize,
        t: String,
        location: String,
        /// Boxed: every `Result<_, BuildError>` would otherwise carry its size.
        #[source]
        source: Box<StepError>,
    },
    #[error("{0}")]
    State(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("the build was interrupted")]
    Interrupted,
}

impl BuildError {
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        BuildError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
