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
    /// The work dataset and its snapshots with their mountpoint, mounted and the
    /// properties [`Session::open`] was asked for, in that order, from the listing of the
    /// root: no rows when the listing said the work dataset does not exist; `None` when
    /// there is no such answer (not asked for, the listing failed otherwise, or an earlier
    /// build's journal was undone since).
    pub work_rows: Option<Vec<zfs::Listed>>,
    pub state: PathBuf,
    pub journal: Journal,
    _lock: Lock,
}

impl Session {
    /// Checks the root dataset, makes the output dataset, locks `work` and cleans up after
    /// an earlier build of it that did not finish. The root's listing also lists `work`
    /// and its snapshots with `work_props` (none: the root alone), for
    /// [`Session::work_rows`].
    pub fn open(
        env: &Env,
        layout: &Layout,
        work: &str,
        work_props: &[&str],
        events: &mut dyn FnMut(&Event),
    ) -> Result<Session, BuildError> {
        let zfs = env.zfs;
        // One listing answers for the root, the output dataset and where it is mounted
        // (each `zfs` process counts when the builder runs emulated), and when asked for
        // the work dataset and its snapshots too; a work dataset that is not there fails
        // it, saying so, and the root is listed alone. A root that cannot be listed is
        // asked about on its own, for the right error.
        let (mut top, mut work_rows) = match work_props {
            [] => (None, None),
            props => list_with_work(zfs, &layout.root, work, props),
        };
        if top.is_none() {
            top = zfs.filesystems(&[&layout.root], 1).ok();
        }
        let top = top.filter(|l| l.iter().any(|f| f.name == layout.root));
        if top.is_none() && !zfs.exists(&layout.root)? {
            return Err(BuildError::NoRoot {
                root: layout.root.clone(),
            });
        }
        let listed_output = top
            .as_ref()
            .and_then(|l| l.iter().find(|f| f.name == layout.output));
        let output_dir = match listed_output {
            Some(fs) => layout::mount_dir(zfs, fs)?,
            None => {
                // The root's listing shows its children: one it lacks is not there.
                if top.is_some() || !zfs.exists(&layout.output)? {
                    zfs.create(&layout.output, &CreateOptions::new())?;
                }
                layout::mountpoint(zfs, &layout.output)?
            }
        };
        let state = layout::state_dir(&output_dir);
        let lock = Lock::acquire(&state.join("locks"), work)?;
        let mut journal = Journal::open(&state.join("journals"), &lock::key(work))?;
        if !journal.is_empty() {
            // What the listing saw may be undone now.
            work_rows = None;
            for u in journal.pending() {
                events(&Event::Cleanup {
                    message: u.to_string(),
                    undo: u,
                });
            }
            let failed = journal.unwind(&env.system());
            if !failed.is_empty() {
                return Err(BuildError::EarlierBuild { failed });
            }
        }
        Ok(Session {
            output_dir,
            work_rows,
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
                message: u.to_string(),
                undo: u,
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
            key: rec.key.clone(),
        });
        Ok(())
    }
}

/// The root's file systems and direct children, and `work` with its snapshots and their
/// `props`, from one `zfs list` of both. When that fails because `work` is not there, no
/// rows for `work` (and the root is for the caller to list alone); `(None, None)` when it
/// fails otherwise (or lacks `work`'s own row).
type Listing = (Option<Vec<zfs::Filesystem>>, Option<Vec<zfs::Listed>>);

fn list_with_work(zfs: &dyn zfs::Zfs, root: &str, work: &str, props: &[&str]) -> Listing {
    let mut asked = vec!["type", "mountpoint", "mounted"];
    asked.extend_from_slice(props);
    let rows = match zfs.list(&[root, work], 1, &asked) {
        Ok(rows) if rows.iter().any(|r| r.name == work) => rows,
        Err(zfs::ZfsError::NotFound { name }) if name == work => {
            return (None, Some(Vec::new()));
        }
        _ => return (None, None),
    };
    let value = |r: &zfs::Listed, i: usize| r.values.get(i).cloned().flatten().unwrap_or_default();
    let top = rows
        .iter()
        .filter(|r| value(r, 0) == "filesystem")
        .filter(|r| {
            r.name == root
                || matches!(zfs::name::parent(&r.name), zfs::name::Parent::Dataset(p) if p == root)
        })
        .map(|r| zfs::Filesystem {
            name: r.name.clone(),
            mountpoint: value(r, 1),
            mounted: value(r, 2) == "yes",
        })
        .collect();
    let work_rows = rows
        .into_iter()
        .filter(|r| r.name == work || r.is_snapshot_of(work))
        .map(|r| zfs::Listed {
            // mountpoint, mounted, then the properties asked for.
            values: r.values[1..].to_vec(),
            name: r.name,
        })
        .collect();
    (Some(top), Some(work_rows))
}
