//! Why a build failed.

use std::path::PathBuf;

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
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error(transparent)]
    Run(#[from] runner::RunError),
    #[error(
        "image builder root dataset {root} does not exist (create it with `zfs create -p {root}`)"
    )]
    NoRoot { root: String },
    #[error("could not clean up after an earlier build: {}", .failed.join("; "))]
    EarlierBuild { failed: Vec<String> },
    #[error("could not undo: {}", .failed.join("; "))]
    Undo { failed: Vec<String> },
    #[error(
        "dataset {dataset} has mountpoint \"{mountpoint}\"; image-builder needs it mounted at a path"
    )]
    NotMounted { dataset: String, mountpoint: String },
    #[error("cannot open the {what} root {}: {source}", .dir.display())]
    OpenRoot {
        what: String,
        dir: PathBuf,
        /// Boxed, as for `Step`.
        #[source]
        source: Box<confine::Error>,
    },
    /// A work directory that could not be removed (confine's error names it and why).
    #[error("{0}")]
    RemoveTree(#[source] Box<confine::Error>),
    #[error("cannot read the build's source files: {0}")]
    Sources(#[source] std::io::Error),
    #[error(
        "--resume: no checkpoint of {work} matches this build (the steps before each \
         checkpoint, the files they read, the features or the input snapshot changed, or none \
         was taken); build without --resume to run the whole stage"
    )]
    NoCheckpoint { work: String },
    #[error("--resume: {work} does not exist, so there is no checkpoint to resume from")]
    NoWork { work: String },
    #[error("--from: {work} does not exist, so there is no checkpoint to start from")]
    NoFromWork { work: String },
    #[error(
        "--from {from}: no checkpoint of {work} holds steps 0-{} as this build makes them \
         (none was taken after them, or the steps, the files they read, the features or the \
         input snapshot changed since); build with --until {} first, or without --from",
        .from - 1,
        .from - 1
    )]
    FromNoMatch { from: usize, work: String },
    #[error(
        "--from {from}: the newest matching checkpoint is {checkpoint} (after step {index}), so \
         step(s) {} would have to run first; use --from {}, or build with --until {} first",
        .gap.join(", "),
        .index + 1,
        .from - 1
    )]
    FromGap {
        from: usize,
        checkpoint: String,
        index: usize,
        gap: Vec<String>,
    },
    #[error("{what}: only a dataset stage keeps its tree after the build, and {why}")]
    DatasetOnly { what: String, why: String },
    #[error("{work} does not exist: build the stage first")]
    NoStage { work: String },
    #[error("could not clean up after an earlier shell: {}", .failed.join("; "))]
    EarlierShell { failed: Vec<String> },
    #[error("could not remove the shell's clone: {}", .failed.join("; "))]
    ShellClone { failed: Vec<String> },
    #[error(
        "{what}: open a checkpoint with --at STEP ({checkpoints}) or the work dataset as it is \
         with --failed"
    )]
    NothingToOpen { what: String, checkpoints: String },
    #[error("there is no checkpoint after step {index}{step}: {checkpoints}")]
    NoCheckpointAfter {
        index: usize,
        step: String,
        checkpoints: String,
    },
    #[error(
        "{work} exists but its input snapshot {snapshot} does not; rebuild the earlier stages \
         or start over with -x"
    )]
    InputGone { work: String, snapshot: String },
    #[error(
        "{work} exists, {why}, and the stage has no input snapshot to start from: pass -x to \
         destroy {work} and rebuild it"
    )]
    NotOurs { work: String, why: String },
    #[error(
        "this stage starts from {snapshot}, which does not exist: build the stage that makes it \
         first"
    )]
    NoInput { snapshot: String },
    #[error(
        "{snapshot} was built elsewhere (it has no {} cache key): {how}",
        super::cache::KEY_PROPERTY
    )]
    BuiltElsewhere { snapshot: String, how: String },
    #[error("cannot make an image UUID: {0}")]
    Uuid(#[source] std::io::Error),
    #[error("pool size {size} MiB: {source}")]
    PoolSize {
        size: u64,
        #[source]
        source: super::gpt::GptError,
    },
    #[error("{}: {source}", .path.display())]
    Label {
        path: PathBuf,
        #[source]
        source: super::gpt::GptError,
    },
    #[error(
        "pool {pool} became {health} while building (its device failed or went away); the \
         build was stopped"
    )]
    PoolFailed { pool: String, health: String },
    #[error("pool {field} entry \"{entry}\" is not a property assignment (name=value)")]
    NotAssignment { field: String, entry: String },
    #[error(
        "partition device {device} did not appear (is the loop driver loaded with partition \
         support?)"
    )]
    NoPartition { device: String },
    #[error("a checksum thread panicked")]
    ChecksumThread,
    #[error("cannot write {}: {source}", .path.display())]
    Pack {
        path: PathBuf,
        #[source]
        source: crate::archive::ArchiveError,
    },
    #[error("a hybrid ISO must include UEFI support (boot_uefi)")]
    HybridWithoutUefi,
    #[error("unexpected lofi device path {0}")]
    LofiPath(String),
    #[error("iso hybrid {field} \"{path}\": {why}")]
    BootBlock {
        field: String,
        path: String,
        why: String,
    },
    #[error("etdump found no El Torito entry for platform efi, system i386")]
    NoEfiEntry,
    #[error("converting to {format}: {source}")]
    Convert {
        format: &'static str,
        #[source]
        source: runner::RunError,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("--store-required: {what}: {source}")]
    StoreRequired {
        what: String,
        #[source]
        source: crate::store::StoreError,
    },
    #[error(
        "{template} is neither here nor in {store} (no {tag}), and only a build of it \
         makes it: build {template} first, with --store to share it"
    )]
    NotInStore {
        template: String,
        store: String,
        tag: String,
    },
    #[error("{needed_by} needs {what}, which {template} makes: {source}")]
    Input {
        needed_by: String,
        what: String,
        template: String,
        #[source]
        source: Box<BuildError>,
    },
    #[error(
        "{needed_by} needs {what}, which {} templates make ({}): build the one meant first",
        .candidates.len(),
        .candidates.join(", ")
    )]
    Producers {
        needed_by: String,
        what: String,
        candidates: Vec<String>,
    },
    #[error("the stages that make each other's inputs go round in a circle: {}", .chain.join(" -> "))]
    InputCycle { chain: Vec<String> },
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

#[cfg(test)]
mod tests {
    use super::BuildError;

    /// The typed errors read as the sentences they replaced, naming their fields' values.
    #[test]
    fn typed_errors_name_their_values() {
        let cases = [
            (
                BuildError::NoRoot {
                    root: "rpool/ib".into(),
                },
                "image builder root dataset rpool/ib does not exist (create it with `zfs create -p rpool/ib`)",
            ),
            (
                BuildError::NotMounted {
                    dataset: "rpool/ib/output".into(),
                    mountpoint: "legacy".into(),
                },
                "dataset rpool/ib/output has mountpoint \"legacy\"; image-builder needs it mounted at a path",
            ),
            (
                BuildError::InputGone {
                    work: "p/w".into(),
                    snapshot: "p/w@in".into(),
                },
                "p/w exists but its input snapshot p/w@in does not; rebuild the earlier stages or start over with -x",
            ),
            (
                BuildError::BuiltElsewhere {
                    snapshot: "p/w@out".into(),
                    how: "pass -x".into(),
                },
                "p/w@out was built elsewhere (it has no org.illumos.image-builder:key cache key): pass -x",
            ),
            (
                BuildError::EarlierBuild {
                    failed: vec!["destroy dataset a: busy".into(), "unmount /b: busy".into()],
                },
                "could not clean up after an earlier build: destroy dataset a: busy; unmount /b: busy",
            ),
            (
                BuildError::NotAssignment {
                    field: "options".into(),
                    entry: "ashift".into(),
                },
                "pool options entry \"ashift\" is not a property assignment (name=value)",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
    }
}
