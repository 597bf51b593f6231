//! The headers `pack` writes: POSIX ustar, and for what ustar cannot hold an extended
//! header with typeflag `X`, the spelling illumos tar reads.
//!
//! Facts from illumos-gate `usr/src/cmd/tar/tar.c`: `getdir` treats only `X` (and GNU `L`)
//! as an extended header and `convtoreg` turns any other unknown typeflag with data (POSIX
//! `x`, GNU `K`) into a regular file, or with the `e` modifier the installer uses
//! (`xeEp@/f`) stops the extraction; `get_xdata` reads the records `path`, `linkpath`,
//! `size`, `uid`, `gid`, `mtime`, `uname`, `gname`, `SUN.devmajor` and `SUN.devminor`.
//! GNU tar, libarchive and Python's tarfile read `X` as POSIX pax `x`.

use tar::{EntryType, Header};

/// The largest value of an 11-digit octal field (size, mtime): tar.c's `TAR_OFFSET_MAX`.
const OCTAL11: u64 = 0o77777777777;
/// The largest value of a 7-digit octal field (uid, gid, device numbers): `OCTAL7CHAR`.
const OCTAL7: u64 = 0o7777777;
/// What illumos tar leaves in the uid or gid field when the id goes into the extended
/// header (tar.c, `tomodes`: `UID_NOBODY`, `GID_NOBODY`).
const NOBODY: u64 = 60001;
/// Where extended headers are named in the archive (only a reader that knows no extended
/// headers would ever create them).
const XHDR_DIR: &[u8] = b"PaxHeaders/";

/// One entry as it goes into the archive.
pub(crate) struct Head<'a> {
    pub kind: EntryType,
    /// The entry's name; directories end in `/`.
    pub name: &'a [u8],
    /// Symlink or hard link target; empty for other kinds.
    pub link: &'a [u8],
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub size: u64,
    /// Device numbers of character and block devices.
    pub dev: Option<(u64, u64)>,
}

/// The header blocks of one entry: an extended header with its records when needed, then
/// the ustar header.
pub(crate) struct Blocks {
    pub extended: Option<(Header, Vec<u8>)>,
    pub header: Header,
}

pub(crate) fn blocks(e: &Head) -> Blocks {
    let mut records = Vec::new();
    let mut h = Header::new_ustar();
    h.set_entry_type(e.kind);
    h.set_mode(e.mode & 0o7777);
    // Records in the order illumos tar writes them (tar.c, `build_dblock`).
    let mtime = match u64::try_from(e.mtime) {
        Ok(t) if t <= OCTAL11 => t,
        _ => {
            record(&mut records, "mtime", e.mtime.to_string().as_bytes());
            e.mtime.clamp(0, OCTAL11 as i64) as u64
        }
    };
    h.set_mtime(mtime);
    if let Some((major, minor)) = e.dev {
        let major = small(&mut records, "SUN.devmajor", major, 0);
        let minor = small(&mut records, "SUN.devminor", minor, 0);
        // Both fit seven octal digits now, so the u32 casts keep them.
        let ustar = h.as_ustar_mut().expect("a ustar header");
        ustar.set_device_major(major as u32);
        ustar.set_device_minor(minor as u32);
    }
    h.set_gid(small(&mut records, "gid", e.gid, NOBODY));
    h.set_uid(small(&mut records, "uid", e.uid, NOBODY));
    if e.size > OCTAL11 {
        record(&mut records, "size", e.size.to_string().as_bytes());
        h.set_size(0);
    } else {
        h.set_size(e.size);
    }
    let ustar = h.as_ustar_mut().expect("a ustar header");
    match split_name(e.name) {
        Some((prefix, name)) => {
            ustar.prefix[..prefix.len()].copy_from_slice(prefix);
            ustar.name[..name.len()].copy_from_slice(name);
        }
        None => {
            record(&mut records, "path", e.name);
            let short = last_component(e.name);
            let short = &short[..short.len().min(100)];
            ustar.name[..short.len()].copy_from_slice(short);
        }
    }
    if e.link.len() > 100 {
        record(&mut records, "linkpath", e.link);
    }
    let link = &e.link[..e.link.len().min(100)];
    ustar.linkname[..link.len()].copy_from_slice(link);
    h.set_cksum();

    let extended = (!records.is_empty()).then(|| {
        let mut x = Header::new_ustar();
        x.set_entry_type(EntryType::new(b'X'));
        x.set_mode(e.mode & 0o7777);
        x.set_uid(h.uid().unwrap_or(0));
        x.set_gid(h.gid().unwrap_or(0));
        x.set_mtime(mtime);
        x.set_size(records.len() as u64);
        let base = last_component(e.name);
        let base = &base[..base.len().min(100 - XHDR_DIR.len())];
        let ustar = x.as_ustar_mut().expect("a ustar header");
        ustar.name[..XHDR_DIR.len()].copy_from_slice(XHDR_DIR);
        ustar.name[XHDR_DIR.len()..XHDR_DIR.len() + base.len()].copy_from_slice(base);
        x.set_cksum();
        (x, records)
    });
    Blocks {
        extended,
        header: h,
    }
}

/// A value for a seven-digit field, or `fallback` there and the value in a record.
fn small(records: &mut Vec<u8>, key: &str, v: u64, fallback: u64) -> u64 {
    if v > OCTAL7 {
        record(records, key, v.to_string().as_bytes());
        fallback
    } else {
        v
    }
}

/// Appends one `"%d %s=%s\n"` record; the length counts the whole record, itself included.
fn record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Splits a name into ustar's 155-byte prefix and 100-byte name at a `/`, as every reader
/// joins them (`prefix/name`); `None` when it cannot be split so.
fn split_name(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= 100 {
        return Some((b"", name));
    }
    (0..name.len().min(156))
        .filter(|&i| name[i] == b'/')
        .find(|&i| {
            let rest = name.len() - i - 1;
            i > 0 && rest > 0 && rest <= 100
        })
        .map(|i| (&name[..i], &name[i + 1..]))
}

/// The last component of a name, a directory's trailing `/` kept.
fn last_component(name: &[u8]) -> &[u8] {
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    match trimmed.iter().rposition(|b| *b == b'/') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(name: &[u8]) -> Head<'_> {
        Head {
            kind: EntryType::Regular,
            name,
            link: b"",
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            size: 5,
            dev: None,
        }
    }

    fn text(b: &Blocks) -> String {
        String::from_utf8(b.extended.as_ref().map(|x| x.1.clone()).unwrap_or_default()).unwrap()
    }

    #[test]
    fn record_lengths_count_themselves() {
        for n in [1, 5, 90, 91, 92, 95, 96, 985, 995, 996, 1000, 9990] {
            let mut out = Vec::new();
            record(&mut out, "path", &vec![b'a'; n]);
            let s = String::from_utf8(out.clone()).unwrap();
            let (len, _) = s.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), out.len(), "{n}: {s}");
        }
        let mut out = Vec::new();
        record(&mut out, "mtime", b"1600000000.000000000");
        // The length illumos tar's gen_date computes for the same record.
        assert_eq!(out, b"30 mtime=1600000000.000000000\n");
    }

    #[test]
    fn short_and_splittable_names_need_no_extended_header() {
        let b = blocks(&head(b"etc/passwd"));
        assert!(b.extended.is_none());
        assert_eq!(&b.header.path_bytes()[..], b"etc/passwd");
        assert_eq!(b.header.as_ustar().unwrap().magic, *b"ustar\0");
        let long = [&[b'p'; 150][..], b"/", &[b'n'; 100]].concat();
        let b = blocks(&head(&long));
        assert!(b.extended.is_none());
        assert_eq!(&b.header.path_bytes()[..], &long[..]);
    }

    #[test]
    fn what_ustar_cannot_hold_goes_into_x_records() {
        let long = [&[b'p'; 200][..], b"/", &[b'n'; 60]].concat();
        let target = vec![b't'; 101];
        let e = Head {
            kind: EntryType::Symlink,
            link: &target,
            uid: 3_000_000,
            gid: 2_097_151,
            mtime: -5,
            size: OCTAL11 + 1,
            ..head(&long)
        };
        let b = blocks(&e);
        let (x, _) = b.extended.as_ref().unwrap();
        assert_eq!(x.entry_type(), EntryType::new(b'X'));
        assert_eq!(&x.path_bytes()[..], [XHDR_DIR, &[b'n'; 60]].concat());
        let want = format!(
            "12 mtime=-5\n15 uid=3000000\n19 size=8589934592\n{} path={}\n{} linkpath={}\n",
            long.len() + 10,
            String::from_utf8(long.clone()).unwrap(),
            target.len() + 14,
            "t".repeat(101)
        );
        assert_eq!(text(&b), want);
        let h = &b.header;
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (NOBODY, 2_097_151));
        assert_eq!((h.size().unwrap(), h.mtime().unwrap()), (0, 0));
        assert_eq!(&h.path_bytes()[..], &[b'n'; 60][..]);
        assert_eq!(h.link_name_bytes().unwrap().len(), 100);
    }

    #[test]
    fn unsplittable_names() {
        // A last component over 100 bytes, a prefix over 155, and a directory.
        assert!(split_name(&[b'a'; 101]).is_none());
        assert!(split_name(&[&[b'a'; 156][..], b"/b"].concat()).is_none());
        let dir = [&[b'd'; 120][..], b"/"].concat();
        assert!(split_name(&dir).is_none());
        assert_eq!(last_component(&dir), &dir[..]);
        assert_eq!(last_component(b"a/b/c/"), b"c/");
    }

    /// A file too large for the size field, an owner too large for the uid field, a time
    /// past the mtime field, a name past 255 bytes: GNU tar, libarchive's bsdtar and Python's
    /// tarfile must read them back exactly. The file's data is a hole in a sparse archive,
    /// so nothing near 9 GiB is written.
    #[test]
    fn large_values_read_back_with_other_tars() {
        use runner::{Cmd, Runner, SystemRunner};
        use std::io::{Seek, SeekFrom, Write};

        let name = format!("{}/{}/{}", "d".repeat(120), "e".repeat(120), "f".repeat(70));
        let size = 9 * (1u64 << 30) + 3;
        let e = Head {
            uid: 3_000_000,
            gid: 4_000_000,
            mtime: 9_000_000_000,
            size,
            ..head(name.as_bytes())
        };
        let b = blocks(&e);
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("big.tar");
        let mut f = std::fs::File::create(&path).unwrap();
        let (x, records) = b.extended.as_ref().unwrap();
        f.write_all(x.as_bytes()).unwrap();
        f.write_all(records).unwrap();
        f.write_all(&vec![0u8; 512 - records.len() % 512]).unwrap();
        f.write_all(b.header.as_bytes()).unwrap();
        let end = f.stream_position().unwrap() + size.div_ceil(512) * 512;
        f.seek(SeekFrom::Start(end)).unwrap();
        f.write_all(&[0u8; 1024]).unwrap();
        drop(f);
        let archive = path.to_str().unwrap();

        // Our own reader, through the same path unpack takes.
        let file = std::fs::File::open(&path).unwrap();
        let mut ar = tar::Archive::new(crate::archive::sun::SunHeaders::new(file));
        let mut entries = ar.entries().unwrap();
        let first = entries.next().unwrap().unwrap();
        assert_eq!(first.size(), size);
        assert_eq!(first.path_bytes().as_ref(), name.as_bytes());
        assert_eq!(first.header().uid().unwrap(), 3_000_000);

        let run = |program: &str, args: &[&str]| {
            if !std::path::Path::new(program).exists() {
                println!("skipped: {program} is not installed");
                return None;
            }
            let out = SystemRunner::new()
                .run(&Cmd::new(program).args(args))
                .unwrap_or_else(|e| panic!("{e}"));
            Some(out.stdout_str())
        };
        let want = format!("3000000/4000000 {size} ");
        if let Some(out) = run("/usr/bin/tar", &["-tv", "--numeric-owner", "-f", archive]) {
            let squeezed = out.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(squeezed.contains(&want), "{out}");
            assert!(out.trim_end().ends_with(&name), "{out}");
        }
        if let Some(out) = run("/usr/bin/bsdtar", &["-tvn", "-f", archive]) {
            let fields: Vec<&str> = out.split_whitespace().collect();
            assert_eq!(
                &fields[2..5],
                ["3000000", "4000000", &size.to_string()],
                "{out}"
            );
            assert_eq!(fields.last(), Some(&name.as_str()), "{out}");
        }
        let script = "import sys, tarfile\n\
            m = tarfile.open(sys.argv[1]).next()\n\
            print(m.name, m.size, m.uid, m.gid, int(m.mtime))";
        if let Some(out) = run("/usr/bin/python3", &["-c", script, archive]) {
            assert_eq!(
                out.trim(),
                format!("{name} {size} 3000000 4000000 9000000000")
            );
        }
    }
}
