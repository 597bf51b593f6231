//! Sysconfig's integration tests, one module a file, linked into one test
//! binary (one link per change instead of one per file).

mod cli;
mod cloudinit_network;
mod cloudinit_oracle;
mod docs;
mod ec2;
mod fuzz;
mod plugins;
mod volumes;
mod yaml_resolver;
mod yaml_test_suite;
