//! Pushes a generated stream to a store, for benchmarks and by hand:
//!
//!     cargo run --release --example storepush -- produce FILE MB RATE
//!     cargo run --release --example storepush -- streamed STORE MB RATE
//!     cargo run --release --example storepush -- sequential STORE MB RATE
//!
//! The stream stands in for `zfs send`: MB mebibytes of incompressible pseudo-random bytes
//! written in 1 MiB pieces at no more than RATE MB/s (0: as fast as it can). `produce`
//! only writes it to FILE; `streamed` pushes it with `Store::push_written` (uploaded while
//! it is written, where the store can); `sequential` writes it to a file in the current
//! directory first and then pushes that file with `Store::push_file`. Prints the seconds
//! taken on standard output and the blob's digest on standard error.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use image_builder::store::{ArtifactFile, Store, StoreUrl};

/// Writes the stream into `path`.
fn produce(path: &Path, mib: u64, rate: f64) -> io::Result<()> {
    let mut f = File::create(path)?;
    // xorshift64, seeded from the clock so that no two runs give a blob the store has.
    let mut s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    for i in 0..mib {
        for word in buf.chunks_mut(8) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            word.copy_from_slice(&s.to_le_bytes());
        }
        f.write_all(&buf)?;
        if rate > 0.0 {
            let due = Duration::from_secs_f64((i + 1) as f64 / rate);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    Ok(())
}

fn open(url: &str) -> Result<Store> {
    let url = StoreUrl::parse(url)?;
    Ok(Store::open(&url)?)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let numbers = |mib: &str, rate: &str| -> Result<(u64, f64)> {
        Ok((
            mib.parse().context("MB must be a whole number")?,
            rate.parse().context("RATE must be a number")?,
        ))
    };
    let start = Instant::now();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["produce", file, mib, rate] => {
            let (mib, rate) = numbers(mib, rate)?;
            produce(Path::new(file), mib, rate).with_context(|| format!("writing {file}"))?;
        }
        ["streamed", url, mib, rate] => {
            let (mib, rate) = numbers(mib, rate)?;
            let store = open(url)?;
            let desc = store
                .push_written(Path::new("."), "application/octet-stream", "stream", |p| {
                    produce(p, mib, rate)
                })
                .context("writing the stream")??;
            eprintln!("{}", desc.digest);
        }
        ["sequential", url, mib, rate] => {
            let (mib, rate) = numbers(mib, rate)?;
            let store = open(url)?;
            let file = tempfile::NamedTempFile::new_in(".")?;
            produce(file.path(), mib, rate).context("writing the stream")?;
            let desc = store.push_file(&ArtifactFile {
                path: file.path().to_path_buf(),
                media_type: "application/octet-stream".into(),
                name: "stream".into(),
            })?;
            eprintln!("{}", desc.digest);
        }
        _ => bail!(
            "usage: storepush produce FILE MB RATE | storepush streamed|sequential STORE MB RATE"
        ),
    }
    println!("{:.3}", start.elapsed().as_secs_f64());
    Ok(())
}
