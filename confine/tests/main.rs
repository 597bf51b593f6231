//! Confine's integration tests, one module a file, linked into one test
//! binary (one link per change instead of one per file).

mod hostile;
mod operations;
