//! What every build target does around its own work: take the work area's lock, undo
//! whatever an earlier crashed build left in the journal, and at the end either record the
//! outputs or undo this build's own journal.

use std::path::PathBuf;
use std::time::Instant;

use zfs::CreateOptions;

use super::error::BuildError;
use super::journal::Journal;
use super::layout::{self, Layout};
use super::lock::{self, Lock};
use super::record::{self, Record};
use super::{Env, Event};

pub(crate) struct Session {
    pub output_dir: PathBuf,
    /// The root dataset's file systems and their direct children, as listed when the
    /// session opened (`None` when that listing failed and each was asked for instead).
    pub top: Option<Vec<zfs::Filesystem>>,
    pub state: PathBuf,
    pub journal: Journal,
    _lock: Lock,
}

impl Session {
    /// Checks the root dataset, makes the output dataset, locks `work` and cleans up after
    /// an earlier build of it that did not finish.
    pub fn open(
        env: &Env,
        layout: &Layout,
        work: &str,
        events: &mut dyn FnMut(&Event),
    ) -> Result<Session, BuildError> {
        let zfs = env.zfs;
        // One listing answers for the root, the output dataset and where it is mounted
        // (each `zfs` process counts when the builder runs emulated); a root that cannot
        // be listed is asked about on its own, for the right error.
        let top = zfs
            .filesystems(&[&layout.root], 1)
            .ok()
            .filter(|l| l.iter().any(|f| f.name == layout.root));
        if top.is_none() && !zfs.exists(&layout.root)? {
            return Err(BuildError::State(format!(
                "image builder root dataset {} does not exist (create it with `zfs create -p {}`)",
                layout.root, layout.root
            )));
        }
        let listed_output = top
            .as_ref()
            .and_then(|l| l.iter().find(|f| f.name == layout.output));
        let output_dir = match listed_output {
            Some(fs) => layout::mount_dir(zfs, fs)?,
            None => {
                if !zfs.exists(&layout.output)? {
                    zfs.create(&layout.output, &CreateOptions::new())?;
                }
                layout::mountpoint(zfs, &layout.output)?
            }
        };
        let state = layout::state_dir(&output_dir);
        let lock = Lock::acquire(&state.join("locks"), work)?;
        let mut journal = Journal::open(&state.join("journals"), &lock::key(work))?;
        if !journal.is_empty() {
            for u in journal.pending() {
                events(&Event::Cleanup {
                    undo: format!("{u:?}"),
                });
            }
            let failed = journal.unwind(&env.system());
            if !failed.is_empty() {
                return Err(BuildError::State(format!(
                    "could not clean up after an earlier build: {}",
                    failed.join("; ")
                )));
            }
        }
        Ok(Session {
            output_dir,
            top,
            state,
            journal,
            _lock: lock,
        })
    }

    /// Undoes everything this build's journal still holds, after a failure or interrupt.
    pub fn abort(&mut self, env: &Env, events: &mut dyn FnMut(&Event)) {
        self.abort_except(env, events, &|_| false)
    }

    /// [`Session::abort`], leaving in place (and in the journal) what `keep` selects.
    pub fn abort_except(
        &mut self,
        env: &Env,
        events: &mut dyn FnMut(&Event),
        keep: &dyn Fn(&super::journal::Undo) -> bool,
    ) {
        // Cleanup must run its own commands even after an interrupt, and to its end
        // whatever signals arrive meanwhile.
        runner::interrupt::clear();
        let _cleanup = runner::interrupt::cleanup();
        for u in self.journal.pending().into_iter().filter(|u| !keep(u)) {
            events(&Event::Cleanup {
                undo: format!("{u:?}"),
            });
        }
        for f in self.journal.unwind_except(&env.system(), keep) {
            tracing::error!("cleanup failed, left for `image-builder clean`: {f}");
        }
    }

    /// Updates `SHA256SUMS`, writes the build record and reports the end of the build.
    pub fn finish(
        &self,
        rec: &mut Record,
        started: Instant,
        events: &mut dyn FnMut(&Event),
    ) -> Result<(), BuildError> {
        record::update_sums(&self.output_dir, &self.state)?;
        rec.seconds = started.elapsed().as_secs_f64();
        let path = rec.write(&self.output_dir)?;
        events(&Event::Finish {
            seconds: rec.seconds,
            outputs: rec.outputs.clone(),
            record: path.display().to_string(),
        });
        Ok(())
    }
}
