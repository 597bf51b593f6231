//! The zfs crate's integration tests, one module a file, linked into one test
//! binary (one link per change instead of one per file). Modules named `real_zfs*` hold the
//! ZFS tier: ignored here, run by `scripts/zfs-tier` in the real-OpenZFS guest.

mod real_zfs;
