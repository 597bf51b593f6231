//! Writer threads for unpacking. Creating a file costs a few system calls that mostly wait
//! on the file system; several threads creating small files at once overlap that waiting,
//! while the unpacking thread keeps reading the archive. Directories, hard links and
//! device nodes stay on the unpacking thread, which waits for the writers (a barrier)
//! whenever order matters.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};

use super::apply::{Attrs, Target};
use super::ArchiveError;

/// Bytes of file data queued at most; the unpacking thread waits beyond this.
const MAX_QUEUED: usize = 64 << 20;

pub(crate) enum Job {
    File {
        path: PathBuf,
        entry: String,
        data: Vec<u8>,
        attrs: Attrs,
    },
    Symlink {
        path: PathBuf,
        entry: String,
        target: PathBuf,
        attrs: Attrs,
    },
}

impl Job {
    fn bytes(&self) -> usize {
        match self {
            Job::File { data, .. } => data.len(),
            Job::Symlink { .. } => 0,
        }
    }

    pub(crate) fn run(&self, t: Target<'_>) -> Result<(), ArchiveError> {
        match self {
            Job::File {
                path,
                entry,
                data,
                attrs,
            } => t.write_file(path, entry, data, *attrs),
            Job::Symlink {
                path,
                entry,
                target,
                attrs,
            } => t.symlink(path, entry, target, *attrs),
        }
    }
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    running: usize,
    queued_bytes: usize,
    error: Option<ArchiveError>,
    closed: bool,
}

#[derive(Default)]
pub(crate) struct Pool {
    state: Mutex<State>,
    work: Condvar,
    progress: Condvar,
}

fn poisoned() -> ArchiveError {
    ArchiveError::Write {
        archive: PathBuf::new(),
        source: std::io::Error::other("a writer thread panicked"),
    }
}

impl Pool {
    /// Queues a job, waiting while too much data is queued; reports a writer's failure.
    pub(crate) fn submit(&self, job: Job) -> Result<(), ArchiveError> {
        let mut st = self.state.lock().map_err(|_| poisoned())?;
        while st.queued_bytes > MAX_QUEUED && st.error.is_none() {
            st = self.progress.wait(st).map_err(|_| poisoned())?;
        }
        if let Some(e) = st.error.take() {
            return Err(e);
        }
        st.queued_bytes += job.bytes();
        st.jobs.push_back(job);
        self.work.notify_one();
        Ok(())
    }

    /// Waits until every queued job is done; reports a writer's failure.
    pub(crate) fn barrier(&self) -> Result<(), ArchiveError> {
        let mut st = self.state.lock().map_err(|_| poisoned())?;
        while (!st.jobs.is_empty() || st.running > 0) && st.error.is_none() {
            st = self.progress.wait(st).map_err(|_| poisoned())?;
        }
        match st.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Lets the writers finish what is queued and stop.
    pub(crate) fn close(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.closed = true;
        }
        self.work.notify_all();
    }

    /// A writer thread's loop. After a failure the rest of the queue is dropped.
    pub(crate) fn work(&self, t: Target<'_>) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        loop {
            let Some(job) = st.jobs.pop_front() else {
                if st.closed {
                    return;
                }
                match self.work.wait(st) {
                    Ok(guard) => st = guard,
                    Err(_) => return,
                }
                continue;
            };
            st.running += 1;
            let skip = st.error.is_some();
            drop(st);
            let result = if skip { Ok(()) } else { job.run(t) };
            let Ok(guard) = self.state.lock() else { return };
            st = guard;
            st.running -= 1;
            st.queued_bytes = st.queued_bytes.saturating_sub(job.bytes());
            if let Err(e) = result {
                st.error.get_or_insert(e);
                st.jobs.clear();
                st.queued_bytes = 0;
            }
            self.progress.notify_all();
        }
    }
}
