//! image-builder: a ZFS-native image builder for illumos and OpenIndiana.

pub mod archive;
pub mod boottest;
pub mod build;
pub mod buildzone;
pub mod context;
pub mod embedded;
pub mod host;
pub mod journal;
pub mod matrix;
pub mod progress;
pub mod steps;
pub mod store;
pub mod template;
pub mod vm;
