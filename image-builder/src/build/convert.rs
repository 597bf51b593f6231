//! Getting finished images out: a sparse copy into the output directory, and `--format`
//! conversions of raw disk images with `qemu-img convert`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use runner::{Cmd, Runner};

use super::error::BuildError;
use crate::host::{Host, Tool};

/// A disk image format besides raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Qcow2,
    Vmdk,
    /// A fixed-size VHD (what Azure and Hyper-V import).
    Vhd,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "qcow2" => Some(Format::Qcow2),
            "vmdk" => Some(Format::Vmdk),
            "vhd" => Some(Format::Vhd),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
            Format::Vhd => "vhd",
        }
    }

    /// `qemu-img` output format and options.
    fn qemu_args(self) -> &'static [&'static str] {
        match self {
            Format::Qcow2 => &["-O", "qcow2"],
            Format::Vmdk => &["-O", "vmdk"],
            // force_size keeps the virtual size exactly the raw size (no CHS rounding).
            Format::Vhd => &["-O", "vpc", "-o", "subformat=fixed,force_size=on"],
        }
    }
}

/// `qemu-img convert -f raw ... SRC DST`, through a temporary name so a killed conversion
/// leaves no half-written output.
pub fn convert(
    runner: &dyn Runner,
    host: Host,
    src: &Path,
    format: Format,
    dst: &Path,
) -> Result<(), BuildError> {
    let partial = super::device::with_suffix(dst, ".partial");
    let cmd = Cmd::new(host.tool(Tool::QemuImg))
        .args(["convert", "-f", "raw"])
        .args(format.qemu_args())
        .arg(src)
        .arg(&partial)
        .timeout(Duration::from_secs(3600));
    runner.run(&cmd).map_err(|source| BuildError::Convert {
        format: format.extension(),
        source,
    })?;
    if partial.exists() {
        std::fs::rename(&partial, dst).map_err(|e| BuildError::io(dst, e))?;
    }
    Ok(())
}

/// Copies `src` to `dst` leaving runs of zeros as holes (images are mostly empty), through
/// a temporary name; the result has mode 0644 as the reference's outputs.
pub fn copy_sparse(src: &Path, dst: &Path) -> Result<(), BuildError> {
    let len = std::fs::metadata(src)
        .map_err(|e| BuildError::io(src, e))?
        .len();
    copy_range_sparse(src, 0, len, dst)
}

/// Copies `len` bytes of `src` from `offset` to a new file `dst`, sparsely: only the data
/// regions the file system reports (SEEK_DATA/SEEK_HOLE) are read, and zero blocks within
/// them are skipped too.
pub fn copy_range_sparse(src: &Path, offset: u64, len: u64, dst: &Path) -> Result<(), BuildError> {
    copy_range(src, offset, len, dst, false).map(|_| ())
}

/// [`copy_sparse`], also returning the SHA-256 of what it copied (hex), computed in the same
/// pass on a second thread while the copy reads and writes: the image is read once.
pub fn copy_sparse_hashed(src: &Path, dst: &Path) -> Result<String, BuildError> {
    let len = std::fs::metadata(src)
        .map_err(|e| BuildError::io(src, e))?
        .len();
    copy_range(src, 0, len, dst, true).map(|h| h.unwrap_or_default())
}

/// [`copy_range_sparse`] with the SHA-256 of the copied range when `hash`.
pub fn copy_range_sparse_hashed(
    src: &Path,
    offset: u64,
    len: u64,
    dst: &Path,
) -> Result<String, BuildError> {
    copy_range(src, offset, len, dst, true).map(|h| h.unwrap_or_default())
}

/// Moves the finished image `src` to `dst` in the same file system (a rename: the work
/// directory is in the output dataset) with mode 0644 as the reference's outputs, and
/// returns its SHA-256 (hex). Across file systems it is a sparse copy instead.
pub fn move_hashed(src: &Path, dst: &Path) -> Result<String, BuildError> {
    use std::os::unix::fs::PermissionsExt;
    let f = File::open(src).map_err(|e| BuildError::io(src, e))?;
    f.sync_all().map_err(|e| BuildError::io(src, e))?;
    std::fs::set_permissions(src, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| BuildError::io(src, e))?;
    match std::fs::rename(src, dst) {
        Ok(()) => sha256_sparse(dst),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
            copy_sparse_hashed(src, dst)
        }
        Err(e) => Err(BuildError::io(dst, e)),
    }
}

/// The SHA-256 (hex) of the file at `path`, reading only the data regions the file system
/// reports; its holes are hashed as the zeros they read as, on the hashing thread.
pub fn sha256_sparse(path: &Path) -> Result<String, BuildError> {
    let (tx, hashing) = hasher();
    let gone = || std::io::Error::other("the checksum thread stopped");
    let read = |tx: std::sync::mpsc::SyncSender<Chunk>| -> std::io::Result<()> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        read_sparse(&mut f, 0, len, &mut |_, c| tx.send(c).map_err(|_| gone()))
    };
    let read = read(tx);
    let sum = hashing.join().map_err(|_| gone());
    read.and(sum).map_err(|e| BuildError::io(path, e))
}

/// What the copy hands the hashing thread: bytes read, or a run of zeros (a hole).
enum Chunk {
    Data(Vec<u8>),
    Zeros(u64),
}

fn hasher() -> (
    std::sync::mpsc::SyncSender<Chunk>,
    std::thread::JoinHandle<String>,
) {
    use sha2::{Digest, Sha256};
    let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(8);
    let h = std::thread::spawn(move || {
        let mut h = Sha256::new();
        let zeros = vec![0u8; 1 << 20];
        for c in rx {
            match c {
                Chunk::Data(b) => h.update(&b),
                Chunk::Zeros(mut n) => {
                    while n > 0 {
                        let k = n.min(zeros.len() as u64) as usize;
                        h.update(&zeros[..k]);
                        n -= k as u64;
                    }
                }
            }
        }
        super::cache::hex(&h.finalize())
    });
    (tx, h)
}

fn copy_range(
    src: &Path,
    offset: u64,
    len: u64,
    dst: &Path,
    hash: bool,
) -> Result<Option<String>, BuildError> {
    let partial = super::device::with_suffix(dst, ".partial");
    let (tx, hashing) = if hash {
        let (tx, h) = hasher();
        (Some(tx), Some(h))
    } else {
        (None, None)
    };
    let gone = || std::io::Error::other("the checksum thread stopped");
    let copy = |tx: Option<std::sync::mpsc::SyncSender<Chunk>>| -> std::io::Result<()> {
        let mut from = File::open(src)?;
        let to = File::create(&partial)?;
        let send = |c: Chunk| match &tx {
            Some(tx) => tx.send(c).map_err(|_| gone()),
            None => Ok(()),
        };
        use std::os::unix::fs::FileExt;
        // Holes and zero blocks are not written: set_len below leaves them holes.
        read_sparse(&mut from, offset, len, &mut |at, c| match c {
            Chunk::Data(buf) if !is_zero(&buf) => {
                to.write_all_at(&buf, at)?;
                send(Chunk::Data(buf))
            }
            Chunk::Data(buf) => send(Chunk::Zeros(buf.len() as u64)),
            zeros => send(zeros),
        })?;
        to.set_len(len)?;
        to.sync_all()?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&partial, dst)
    };
    let copied = copy(tx);
    // The sender is dropped with the closure's argument: the thread finishes.
    let sum = hashing.map(|h| h.join().map_err(|_| gone()));
    let result = copied.and_then(|()| sum.transpose());
    result.map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        BuildError::io(dst, e)
    })
}

/// Reads `len` bytes of `from` from `offset` as the file system stores them: each data
/// region in chunks of at most 1 MiB, each hole as one run of zeros, handed to `each` in
/// order with the chunk's position relative to `offset`.
fn read_sparse(
    from: &mut File,
    offset: u64,
    len: u64,
    each: &mut dyn FnMut(u64, Chunk) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut at = offset;
    for (start, end) in data_regions(from, offset, offset + len) {
        each(at - offset, Chunk::Zeros(start - at))?;
        from.seek(SeekFrom::Start(start))?;
        let mut pos = start;
        while pos < end {
            let n = (1u64 << 20).min(end - pos) as usize;
            let mut buf = vec![0u8; n];
            from.read_exact(&mut buf)?;
            each(pos - offset, Chunk::Data(buf))?;
            pos += n as u64;
        }
        at = end;
    }
    each(at - offset, Chunk::Zeros(offset + len - at))
}

/// The data regions of `f` between `from` and `to`; the whole range when the file system
/// cannot tell.
fn data_regions(f: &File, from: u64, to: u64) -> Vec<(u64, u64)> {
    use rustix::fs::{seek, SeekFrom as S};
    let mut v = Vec::new();
    let mut off = from;
    while off < to {
        let start = match seek(f, S::Data(off)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => return vec![(from, to)],
        };
        if start >= to {
            break;
        }
        let end = seek(f, S::Hole(start)).unwrap_or(to).min(to);
        v.push((start, end));
        off = end;
    }
    v
}

fn is_zero(b: &[u8]) -> bool {
    let mut words = b.chunks_exact(16);
    words
        .by_ref()
        .all(|w| u128::from_ne_bytes(w.try_into().unwrap_or([1; 16])) == 0)
        && words.remainder().iter().all(|x| *x == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn sparse_copy_keeps_bytes_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.raw");
        let mut f = File::create(&src).unwrap();
        f.set_len(64 << 20).unwrap();
        f.seek(SeekFrom::Start(5 << 20)).unwrap();
        f.write_all(b"data in the middle").unwrap();
        f.seek(SeekFrom::Start((64 << 20) - 3)).unwrap();
        f.write_all(b"end").unwrap();
        drop(f);
        let dst = dir.path().join("b.raw");
        copy_sparse(&src, &dst).unwrap();
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
        let m = std::fs::metadata(&dst).unwrap();
        assert_eq!(m.len(), 64 << 20);
        assert!(
            m.blocks() * 512 < 8 << 20,
            "{} blocks: not sparse",
            m.blocks()
        );
        assert_eq!(m.mode() & 0o777, 0o644);
    }

    #[test]
    fn the_hashed_copy_gives_the_sha256_of_the_bytes_holes_included() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.raw");
        let mut f = File::create(&src).unwrap();
        f.set_len(9 << 20).unwrap();
        f.seek(SeekFrom::Start(3 << 20)).unwrap();
        f.write_all(&vec![7u8; (1 << 20) + 5]).unwrap();
        drop(f);
        let dst = dir.path().join("b.raw");
        let sum = copy_sparse_hashed(&src, &dst).unwrap();
        let bytes = std::fs::read(&src).unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), bytes);
        use sha2::Digest;
        assert_eq!(sum, crate::build::cache::hex(&sha2::Sha256::digest(&bytes)));
        // A range: the bytes of that range only.
        let part = dir.path().join("c.raw");
        let sum = copy_range_sparse_hashed(&src, 2 << 20, 4 << 20, &part).unwrap();
        let range = &bytes[2 << 20..6 << 20];
        assert_eq!(std::fs::read(&part).unwrap(), range);
        assert_eq!(sum, crate::build::cache::hex(&sha2::Sha256::digest(range)));
        // A file that is not there: an error, nothing left behind.
        assert!(copy_sparse_hashed(&dir.path().join("none"), &dst).is_err());
        assert!(!crate::build::device::with_suffix(&dst, ".partial").exists());
    }

    #[test]
    fn a_moved_image_keeps_its_bytes_and_its_sum_is_that_of_the_bytes_holes_included() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("lofi.raw");
        let mut f = File::create(&src).unwrap();
        // A hole, data, a hole, data ending one byte short of the end.
        f.set_len((5 << 20) + 1).unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(&vec![3u8; 100_000]).unwrap();
        f.seek(SeekFrom::Start(4 << 20)).unwrap();
        f.write_all(&vec![9u8; 1 << 20]).unwrap();
        drop(f);
        let bytes = std::fs::read(&src).unwrap();
        let dst = dir.path().join("g-img.raw");
        std::fs::write(&dst, b"an older image").unwrap();
        let sum = move_hashed(&src, &dst).unwrap();
        use sha2::Digest;
        assert_eq!(sum, crate::build::cache::hex(&sha2::Sha256::digest(&bytes)));
        // And what coreutils says of the file, holes and all.
        let coreutils = std::process::Command::new("sha256sum")
            .arg(&dst)
            .output()
            .unwrap();
        let coreutils = String::from_utf8(coreutils.stdout).unwrap();
        assert_eq!(coreutils.split_whitespace().next(), Some(sum.as_str()));
        assert_eq!(std::fs::read(&dst).unwrap(), bytes);
        assert!(!src.exists());
        let mode = std::fs::metadata(&dst).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        // An empty file: the sum of nothing.
        let empty = dir.path().join("empty");
        File::create(&empty).unwrap();
        assert_eq!(
            sha256_sparse(&empty).unwrap(),
            crate::build::cache::hex(&sha2::Sha256::digest(b""))
        );
        // A source that is not there: an error naming it.
        let err = move_hashed(&src, &dst).unwrap_err().to_string();
        assert!(err.contains("lofi.raw"), "{err}");
    }

    #[test]
    fn qemu_img_converts_to_each_format() {
        if !Host::Linux.has(Tool::QemuImg) {
            eprintln!("qemu_img_converts_to_each_format: skipped: no qemu-img");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.raw");
        let mut f = File::create(&src).unwrap();
        f.set_len(16 << 20).unwrap();
        f.write_all(b"first sector").unwrap();
        drop(f);
        let runner = runner::SystemRunner::new();
        for (fmt, name) in [
            (Format::Qcow2, "qcow2"),
            (Format::Vmdk, "vmdk"),
            (Format::Vhd, "vpc"),
        ] {
            let out = dir.path().join(format!("a.{}", fmt.extension()));
            convert(&runner, Host::Linux, &src, fmt, &out).unwrap();
            // A fixed VHD is raw data plus a footer, so probing calls it raw: name it.
            let info = std::process::Command::new("/usr/bin/qemu-img")
                .args(["info", "--output=json", "-f", name])
                .arg(&out)
                .output()
                .unwrap();
            assert!(info.status.success(), "{fmt:?}");
            let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
            assert_eq!(v["format"], name);
            assert_eq!(v["virtual-size"], 16 << 20, "{fmt:?}");
            let bytes = std::fs::read(&out).unwrap();
            match fmt {
                Format::Qcow2 => assert_eq!(&bytes[..4], b"QFI\xfb"),
                Format::Vmdk => assert_eq!(&bytes[..4], b"KDMV"),
                Format::Vhd => assert_eq!(&bytes[bytes.len() - 512..][..8], b"conectix"),
            }
            // And back: the same bytes.
            let back = dir.path().join(format!("{name}.back"));
            let st = std::process::Command::new("/usr/bin/qemu-img")
                .args(["convert", "-f", name, "-O", "raw"])
                .arg(&out)
                .arg(&back)
                .status()
                .unwrap();
            assert!(st.success());
            assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&src).unwrap());
        }
    }
}
