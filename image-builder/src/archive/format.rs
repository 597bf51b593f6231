//! Which compression an archive uses, decided by its file name, and the streams for each.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use super::pgzip::ParGzEncoder;
use super::ArchiveError;

/// The archive formats the file and tar steps read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `.tar`
    None,
    /// `.tar.gz` or `.tgz`
    Gzip,
    /// `.tar.zst` or `.tzst`
    Zstd,
    /// `.tar.xz` or `.txz`
    Xz,
}

impl Compression {
    /// Chooses by the end of the file name.
    pub fn from_name(path: &Path) -> Result<Compression, ArchiveError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let table: [(&[&str], Compression); 4] = [
            (&[".tar.gz", ".tgz"], Compression::Gzip),
            (&[".tar.zst", ".tzst"], Compression::Zstd),
            (&[".tar.xz", ".txz"], Compression::Xz),
            (&[".tar"], Compression::None),
        ];
        table
            .iter()
            .find(|(ends, _)| ends.iter().any(|e| name.ends_with(e)))
            .map(|(_, c)| *c)
            .ok_or_else(|| ArchiveError::UnknownFormat {
                path: path.to_path_buf(),
            })
    }

    /// The level used when the caller does not choose: gzip's and xz's default 6, zstd's 3.
    pub fn default_level(self) -> u32 {
        match self {
            Compression::Zstd => 3,
            _ => 6,
        }
    }
}

/// A compressing writer over a file.
pub(crate) enum Compressor {
    Plain(BufWriter<File>),
    Gzip(ParGzEncoder<BufWriter<File>>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<File>>),
    Xz(liblzma::write::XzEncoder<BufWriter<File>>),
}

impl Compressor {
    pub(crate) fn new(
        c: Compression,
        file: File,
        level: u32,
        threads: usize,
    ) -> io::Result<Compressor> {
        let out = BufWriter::with_capacity(1 << 20, file);
        Ok(match c {
            Compression::None => Compressor::Plain(out),
            Compression::Gzip => Compressor::Gzip(ParGzEncoder::new(out, level, threads)?),
            Compression::Zstd => {
                let mut z = zstd::stream::write::Encoder::new(out, level as i32)?;
                z.include_checksum(true)?;
                if threads > 1 {
                    z.multithread(threads as u32)?;
                }
                Compressor::Zstd(z)
            }
            Compression::Xz => {
                let stream = liblzma::stream::MtStreamBuilder::new()
                    .preset(level)
                    .check(liblzma::stream::Check::Crc64)
                    .threads(threads.max(1) as u32)
                    .encoder()
                    .map_err(io::Error::other)?;
                Compressor::Xz(liblzma::write::XzEncoder::new_stream(out, stream))
            }
        })
    }

    /// Ends the compressed stream and returns the file, flushed but not synced.
    pub(crate) fn finish(self) -> io::Result<File> {
        let buffered = match self {
            Compressor::Plain(w) => w,
            Compressor::Gzip(w) => w.finish()?,
            Compressor::Zstd(w) => w.finish()?,
            Compressor::Xz(w) => w.finish()?,
        };
        buffered.into_inner().map_err(|e| e.into_error())
    }
}

impl Write for Compressor {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Plain(w) => w.write(buf),
            Compressor::Gzip(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
            Compressor::Xz(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Plain(w) => w.flush(),
            Compressor::Gzip(w) => w.flush(),
            Compressor::Zstd(w) => w.flush(),
            Compressor::Xz(w) => w.flush(),
        }
    }
}

/// A decompressing reader. Gzip and xz accept several concatenated members or streams,
/// as `gzip -d` and `xz -d` do (pigz and parallel xz write those).
pub(crate) fn decompressor<R: Read + Send + 'static>(
    c: Compression,
    r: R,
) -> io::Result<Box<dyn Read + Send>> {
    let r = BufReader::with_capacity(1 << 20, r);
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(r)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_by_name() {
        let cases = [
            ("out/image.tar", Compression::None),
            ("image.tar.gz", Compression::Gzip),
            ("IMAGE.TGZ", Compression::Gzip),
            ("a.b.tar.zst", Compression::Zstd),
            ("x.tar.xz", Compression::Xz),
            ("x.txz", Compression::Xz),
        ];
        for (name, want) in cases {
            assert_eq!(
                Compression::from_name(Path::new(name)).unwrap(),
                want,
                "{name}"
            );
        }
        for bad in ["image.gz", "image.zip", "tar", "image.tar.bz2"] {
            let err = Compression::from_name(Path::new(bad)).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
