//! image-builder: a ZFS-native image builder for illumos and OpenIndiana.

pub mod steps;
pub mod template;
pub mod vm;
