//! Image-builder's integration tests, one module a file, linked into one test
//! binary (one link per change instead of one per file). Modules named `real_zfs*` hold the
//! ZFS tier: ignored here, run by `scripts/zfs-tier` in the real-OpenZFS guest.
//!
//! A test that sets the process-wide interrupt (`runner::interrupt`) cannot live here: it
//! would stop the commands of the tests running beside it. `image_health.rs` is its own
//! binary for that reason.

mod common;
mod guest;
mod tier;

mod archive_hostile;
mod archive_interop;
mod archive_roundtrip;
mod boot_test;
mod boot_test_zfs;
mod boot_test_zfs_matrix;
mod build_zone;
mod cache_hits;
mod cli;
mod cli_corpus;
mod cli_errors;
mod cli_steps;
mod corpus;
mod docs;
mod embedded_warm;
mod fuzz;
mod image_builds;
mod image_pull;
mod language;
mod matrix_emit;
mod real_zfs_boottest;
mod real_zfs_build;
mod real_zfs_checkpoints;
mod real_zfs_devimage;
mod real_zfs_matrix;
mod real_zfs_pool;
mod real_zfs_step_select;
mod real_zfs_store;
mod real_zfs_zone;
mod shipped_templates;
mod stage_store;
mod stage_store_oci;
mod stage_store_plan;
mod step_select;
mod steps_illumos;
mod steps_native;
mod store_registry;
mod store_registry_tls;
mod vm_live_loop;
mod vm_print;
mod vm_qemu;
mod zone_target;
