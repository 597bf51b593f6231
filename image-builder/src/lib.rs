//! image-builder: a ZFS-native image builder for illumos and OpenIndiana.

pub mod archive;
