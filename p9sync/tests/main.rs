//! P9sync's integration tests, one module a file, linked into one test
//! binary (one link per change instead of one per file).

mod common;
mod fake;

mod cli;
mod codec;
mod decode_fuzz;
mod device;
mod diod;
mod hostile;
mod readahead;
