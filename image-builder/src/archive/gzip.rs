//! The gzip step: compress a file from the build's output area into the image.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use confine::Root;

use super::pgzip::ParGzEncoder;
use super::{all_cores, ArchiveError};

/// Compresses `src` (a host file, e.g. in the output dataset) into `target` inside `root`
/// with gzip `-6` on all cores (`threads` 0) and gives it `mode`. An existing target is
/// replaced atomically, never written through: a symlink at `target` is replaced itself.
/// Returns the compressed size.
pub fn gzip_into(
    src: &Path,
    root: &Root,
    target: &Path,
    mode: u32,
    threads: usize,
) -> Result<u64, ArchiveError> {
    let threads = if threads == 0 { all_cores() } else { threads };
    let mut input = File::open(src).map_err(|source| ArchiveError::Read {
        archive: src.to_path_buf(),
        source,
    })?;
    let mut written = 0u64;
    root.write_atomic_with(target, mode, |out| {
        let counted = Counted {
            inner: &mut *out,
            n: &mut written,
        };
        let mut gz = ParGzEncoder::new(counted, 6, threads)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => gz.write_all(&buf[..n])?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        gz.finish()?;
        Ok(())
    })
    .map_err(|source| ArchiveError::Gzip {
        src: src.to_path_buf(),
        target: target.to_path_buf(),
        source: Box::new(source),
    })?;
    Ok(written)
}

struct Counted<'a, W> {
    inner: W,
    n: &'a mut u64,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        *self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
