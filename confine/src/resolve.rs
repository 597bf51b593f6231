//! Path resolution inside the root: the one place that decides where a path leads.
//!
//! Two resolvers give the same answers. `openat2(2)` with `RESOLVE_IN_ROOT` lets the Linux
//! kernel treat the root descriptor as `/` for every `..` and every symlink on the way. Where
//! that system call is missing (illumos, Linux before 5.6, sandboxes that filter it) a walk
//! opens one component at a time with `O_NOFOLLOW`, reads each symlink itself and restarts
//! absolute targets at the root, so `..` and `/` are clamped at the root the same way.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path};

use rustix::fs::{Mode, OFlags};

/// How many symlinks one lookup may pass, the same bound Linux uses.
const MAX_SYMLINKS: usize = 40;

/// Which resolver a [`crate::Root`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// `openat2` with `RESOLVE_IN_ROOT` when the kernel has it, the walk otherwise.
    Auto,
    /// The kernel's `openat2` with `RESOLVE_IN_ROOT` (Linux 5.6 and later).
    Openat2,
    /// The portable component-by-component walk.
    Walk,
}

/// One step of an image path once `/` and `.` are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Up,
    Name(OsString),
}

/// Splits an image path (absolute or relative, both meaning "from the image root").
pub(crate) fn steps(path: &Path) -> Vec<Step> {
    path.components()
        .filter_map(|c| match c {
            Component::ParentDir => Some(Step::Up),
            Component::Normal(n) => Some(Step::Name(n.to_owned())),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

fn steps_of_link(target: &[u8]) -> Vec<Step> {
    steps(Path::new(OsStr::from_bytes(target)))
}

/// Opens `steps` below `root` with `flags`, following every symlink but never leaving the root.
pub(crate) fn open(
    root: BorrowedFd<'_>,
    resolver: Resolver,
    steps: &[Step],
    flags: OFlags,
    mode: Mode,
) -> io::Result<OwnedFd> {
    match resolver {
        Resolver::Openat2 | Resolver::Auto => open_kernel(root, steps, flags, mode),
        Resolver::Walk => open_walk(root, steps, flags, mode),
    }
}

/// Decides at run time whether the kernel can resolve in root.
pub(crate) fn detect(root: BorrowedFd<'_>) -> Resolver {
    match sys::openat2_in_root(
        root,
        OsStr::new("."),
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
    ) {
        Ok(_) => Resolver::Openat2,
        Err(e) => {
            tracing::debug!(error = %e, "openat2 with RESOLVE_IN_ROOT unavailable; walking paths instead");
            Resolver::Walk
        }
    }
}

fn open_kernel(
    root: BorrowedFd<'_>,
    steps: &[Step],
    flags: OFlags,
    mode: Mode,
) -> io::Result<OwnedFd> {
    let mut joined = Vec::new();
    for s in steps {
        if !joined.is_empty() {
            joined.push(b'/');
        }
        match s {
            Step::Up => joined.extend_from_slice(b".."),
            Step::Name(n) => joined.extend_from_slice(n.as_bytes()),
        }
    }
    if joined.is_empty() {
        joined.push(b'.');
    }
    let path = OsString::from_vec(joined);
    // EAGAIN means a concurrent rename raced the lookup; the kernel asks us to retry.
    let mut tries = 0;
    loop {
        match sys::openat2_in_root(root, &path, flags, mode) {
            Err(e)
                if e.raw_os_error() == Some(rustix::io::Errno::AGAIN.raw_os_error())
                    && tries < 16 =>
            {
                tries += 1
            }
            other => return other,
        }
    }
}

fn is_symlink_refusal(e: rustix::io::Errno) -> bool {
    // Opening a symlink with O_NOFOLLOW fails with ELOOP, but Linux reports ENOTDIR first
    // when O_DIRECTORY is also set, and FreeBSD says EMLINK; readlinkat tells them apart.
    e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR || e == rustix::io::Errno::MLINK
}

fn open_walk(
    root: BorrowedFd<'_>,
    steps: &[Step],
    flags: OFlags,
    mode: Mode,
) -> io::Result<OwnedFd> {
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    // Directories entered so far; empty means "at the root". Only real directories are
    // pushed, so popping one for `..` is the physical parent, and popping at the root stays.
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut pending: VecDeque<Step> = steps.iter().cloned().collect();
    let mut links = 0;
    while let Some(step) = pending.pop_front() {
        let name = match step {
            Step::Up => {
                stack.pop();
                continue;
            }
            Step::Name(n) => n,
        };
        let last = pending.is_empty();
        let cur = stack.last().map(|f| f.as_fd()).unwrap_or(root);
        let want = if last {
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC
        } else {
            dir_flags
        };
        match rustix::fs::openat(cur, name.as_os_str(), want, mode) {
            Ok(fd) if last => return Ok(fd),
            Ok(fd) => stack.push(fd),
            Err(e) if is_symlink_refusal(e) => {
                let target = match rustix::fs::readlinkat(cur, name.as_os_str(), Vec::new()) {
                    Ok(t) => t,
                    Err(_) => return Err(e.into()),
                };
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(rustix::io::Errno::LOOP.into());
                }
                let bytes = target.as_bytes();
                if bytes.first() == Some(&b'/') {
                    stack.clear();
                }
                for s in steps_of_link(bytes).into_iter().rev() {
                    pending.push_front(s);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    let cur = stack.last().map(|f| f.as_fd()).unwrap_or(root);
    Ok(rustix::fs::openat(cur, ".", flags | OFlags::CLOEXEC, mode)?)
}

/// The one system call that only Linux has. Elsewhere it reports ENOSYS, so the choice
/// between resolvers stays a run-time one and both are built and tested everywhere.
mod sys {
    use super::*;

    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn openat2_in_root(
        root: BorrowedFd<'_>,
        path: &OsStr,
        flags: OFlags,
        mode: Mode,
    ) -> io::Result<OwnedFd> {
        use rustix::fs::ResolveFlags;
        Ok(rustix::fs::openat2(
            root,
            path,
            flags | OFlags::CLOEXEC,
            mode,
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )?)
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(crate) fn openat2_in_root(
        _root: BorrowedFd<'_>,
        _path: &OsStr,
        _flags: OFlags,
        _mode: Mode,
    ) -> io::Result<OwnedFd> {
        Err(rustix::io::Errno::NOSYS.into())
    }
}
