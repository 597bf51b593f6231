//! Packs or unpacks an image tree with the archive engine, for benchmarks and by hand:
//!
//!     cargo run --release --example tarbench -- pack ROOT ARCHIVE [THREADS]
//!     cargo run --release --example tarbench -- unpack ARCHIVE ROOT
//!
//! Prints the seconds taken on standard output. `SOURCE_DATE_EPOCH` is honoured, and
//! `TARBENCH_WRITERS` sets the number of unpacking writer threads.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use confine::Root;
use image_builder::archive::{pack, unpack, PackOptions, UnpackOptions};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let start = Instant::now();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["pack", root, archive, rest @ ..] => {
            let threads = match rest.first() {
                Some(t) => t.parse().context("THREADS must be a number")?,
                None => 0,
            };
            let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
                Ok(v) => Some(v.parse().context("SOURCE_DATE_EPOCH must be a number")?),
                Err(_) => None,
            };
            let opts = PackOptions {
                threads,
                source_date_epoch,
                ..Default::default()
            };
            let root = Root::open(root)?;
            let s = pack(&root, &PathBuf::from(archive), &opts, &mut |_| {})?;
            eprintln!(
                "{} entries, {} file bytes, {} archive bytes",
                s.entries, s.file_bytes, s.archive_bytes
            );
        }
        ["unpack", archive, root] => {
            let root = Root::open(root)?;
            let writers = match std::env::var("TARBENCH_WRITERS") {
                Ok(v) => v.parse().context("TARBENCH_WRITERS must be a number")?,
                Err(_) => UnpackOptions::default().writers,
            };
            let opts = UnpackOptions {
                writers,
                ..Default::default()
            };
            let s = unpack(&PathBuf::from(archive), &root, &opts, &mut |_| {})?;
            eprintln!("{} entries, {} file bytes", s.entries, s.file_bytes);
        }
        _ => bail!("usage: tarbench pack ROOT ARCHIVE [THREADS] | tarbench unpack ARCHIVE ROOT"),
    }
    println!("{:.3}", start.elapsed().as_secs_f64());
    Ok(())
}
