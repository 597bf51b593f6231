//! Hostile archives, built header by header: refused with the entry named, and nothing
//! outside the image root read or changed.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::snapshot;
use confine::Root;
use image_builder::archive::{unpack, ArchiveError, UnpackOptions};

/// One ustar member: `kind` is the type flag (b'0' file, b'1' hard link, b'2' symlink,
/// b'L' GNU long name).
fn member(name: &[u8], kind: u8, link: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    let octal = |h: &mut [u8; 512], at: usize, width: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = width - 1);
        h[at..at + width].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, 0o644);
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, data.len() as u64);
    octal(&mut h, 136, 12, 1_600_000_000);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn archive(members: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = members.concat();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

struct World {
    tmp: tempfile::TempDir,
    outside: PathBuf,
    root: PathBuf,
}

fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("sentinel"), b"host").unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    World { tmp, outside, root }
}

/// Unpacks `bytes` (gzipped, to go through the whole pipeline) into a fresh root and
/// returns the outcome, asserting the host side is untouched either way.
fn unpack_hostile(w: &World, bytes: &[u8]) -> Result<(), ArchiveError> {
    unpack_hostile_with(w, bytes, UnpackOptions::default().writers)
}

fn unpack_hostile_with(w: &World, bytes: &[u8], writers: usize) -> Result<(), ArchiveError> {
    let path = w.tmp.path().join("hostile.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    std::fs::write(&path, gz.finish().unwrap()).unwrap();
    let before = snapshot(&w.outside);
    let top_before = top_level(w.tmp.path());
    let root = Root::open(&w.root).unwrap();
    let opts = UnpackOptions {
        writers,
        ..Default::default()
    };
    let result = unpack(&path, &root, &opts, &mut |_| {}).map(|_| ());
    assert_eq!(before, snapshot(&w.outside), "the host side changed");
    assert_eq!(
        top_before,
        top_level(w.tmp.path()),
        "something appeared beside the root"
    );
    result
}

fn top_level(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn assert_refused(result: Result<(), ArchiveError>, want_entry: &str, want_reason: &str) {
    match result {
        Err(ArchiveError::Refused { entry, reason, .. }) => {
            assert_eq!(entry, want_entry);
            assert!(reason.contains(want_reason), "{reason}");
        }
        other => panic!("expected {want_entry} to be refused, got {other:?}"),
    }
}

#[test]
fn dotdot_entries_are_refused_by_name() {
    for name in [
        "../outside/sentinel",
        "a/../../outside/sentinel",
        "./../../x",
    ] {
        let w = world();
        let bytes = archive(&[
            member(b"ok", b'0', b"", b"fine"),
            member(name.as_bytes(), b'0', b"", b"pwned"),
        ]);
        let err = unpack_hostile(&w, &bytes);
        assert_refused(err, name, "`..`");
        // What came before the bad entry landed inside the root.
        assert_eq!(std::fs::read(w.root.join("ok")).unwrap(), b"fine");
    }
}

#[test]
fn absolute_entries_are_refused_by_name() {
    let w = world();
    let name = w.outside.join("sentinel");
    let bytes = archive(&[member(
        name.to_str().unwrap().as_bytes(),
        b'0',
        b"",
        b"pwned",
    )]);
    assert_refused(
        unpack_hostile(&w, &bytes),
        name.to_str().unwrap(),
        "absolute",
    );
}

#[test]
fn long_gnu_names_are_checked_too() {
    let w = world();
    let long = format!("{}/../../../../x", "d".repeat(120));
    let bytes = archive(&[
        member(b"././@LongLink", b'L', b"", format!("{long}\0").as_bytes()),
        member(b"short", b'0', b"", b"pwned"),
    ]);
    assert_refused(unpack_hostile(&w, &bytes), &long, "`..`");
}

#[test]
fn links_pointing_outside_are_refused_by_name() {
    let w = world();
    let abs = w.outside.join("sentinel");
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            member(b"etc/link", b'2', b"../../outside/sentinel", b""),
            "etc/link",
            "leads outside",
        ),
        (
            member(b"link", b'2', b"a/../../x", b""),
            "link",
            "leads outside",
        ),
        (
            member(b"hard", b'1', b"../outside/sentinel", b""),
            "hard",
            "`..`",
        ),
        (
            member(b"hard", b'1', abs.to_str().unwrap().as_bytes(), b""),
            "hard",
            "absolute",
        ),
    ];
    for (m, entry, reason) in cases {
        let w = world();
        assert_refused(unpack_hostile(&w, &archive(&[m])), entry, reason);
    }
}

#[test]
fn absolute_symlinks_resolve_inside_the_root() {
    // An absolute symlink is a normal image symlink; writing through it lands in the
    // image's own copy of that path.
    let w = world();
    let bytes = archive(&[
        member(b"data/", b'5', b"", b""),
        member(b"esc", b'2', b"/data", b""),
        member(b"esc/sentinel", b'0', b"", b"pwned"),
        member(b"etc", b'2', b"/", b""),
        member(b"etc/hosts", b'0', b"", b"image hosts"),
    ]);
    unpack_hostile(&w, &bytes).unwrap();
    assert_eq!(
        std::fs::read(w.root.join("data/sentinel")).unwrap(),
        b"pwned"
    );
    assert_eq!(std::fs::read(w.root.join("hosts")).unwrap(), b"image hosts");

    // Naming the host's directory leads to that path inside the image, which does not
    // exist there: the write fails instead of reaching the host.
    let w = world();
    let host_dir = w.outside.to_str().unwrap().as_bytes().to_vec();
    let bytes = archive(&[
        member(b"esc", b'2', &host_dir, b""),
        member(b"esc/sentinel", b'0', b"", b"pwned"),
    ]);
    match unpack_hostile(&w, &bytes) {
        Err(ArchiveError::Entry { entry, source, .. }) => {
            assert_eq!(entry, "esc/sentinel");
            assert!(source.is_not_found(), "{source}");
        }
        other => panic!("expected a failed entry, got {other:?}"),
    }
}

#[test]
fn a_symlink_replaced_by_a_file_is_not_written_through() {
    let w = world();
    let bytes = archive(&[
        member(
            b"f",
            b'2',
            w.outside.join("sentinel").to_str().unwrap().as_bytes(),
            b"",
        ),
        member(b"f", b'0', b"", b"replaced"),
    ]);
    unpack_hostile(&w, &bytes).unwrap();
    let m = std::fs::symlink_metadata(w.root.join("f")).unwrap();
    assert!(m.is_file());
    assert_eq!(std::fs::read(w.root.join("f")).unwrap(), b"replaced");
}

#[test]
fn refusal_message_names_entry_and_archive() {
    let w = world();
    let err = unpack_hostile(&w, &archive(&[member(b"../x", b'0', b"", b"")])).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("`../x`") && msg.contains("hostile.tar.gz"),
        "{msg}"
    );
}

#[test]
fn entries_through_a_just_unpacked_symlink_land_where_it_points() {
    // `lib -> usr/lib` followed by `lib/libc.so`: the symlink must exist before the file
    // is placed, whatever thread writes it; and a path written twice keeps the last one.
    let mut members = vec![member(b"usr/lib/", b'5', b"", b"")];
    for i in 0..50 {
        members.push(member(format!("usr/lib/f{i}").as_bytes(), b'0', b"", b"x"));
    }
    members.push(member(b"lib", b'2', b"usr/lib", b""));
    members.push(member(b"lib/libc.so", b'0', b"", b"libc"));
    members.push(member(b"lib/libc.so", b'0', b"", b"libc v2"));
    for writers in [0, 1, 4] {
        let w = world();
        unpack_hostile_with(&w, &archive(&members), writers).unwrap();
        let lib = std::fs::symlink_metadata(w.root.join("lib")).unwrap();
        assert!(lib.is_symlink(), "writers {writers}");
        let libc = std::fs::read(w.root.join("usr/lib/libc.so")).unwrap();
        assert_eq!(libc, b"libc v2", "writers {writers}");
    }
}

/// An extended attribute as illumos `tar c@f` writes it (illumos-gate `usr/src/cmd/tar/tar.c`,
/// `put_xattr_hdr` and `prepare_xattr`; layout in `usr/src/head/archives.h`): after the
/// file, an `E` member named `/dev/null/<attr>.hdr` whose data is a `struct xattr_hdr`
/// (`h_version` "1.0", `h_size`, `h_component_len`, `h_link_component_len`, each `%0*d`)
/// and a `struct xattr_buf` (`h_namesz`, `h_typeflag`, `file NUL attr NUL`), then an `E`
/// member `/dev/null/<attr>` holding the attribute's value.
fn xattr_members(file: &str, attr: &str, value: &[u8]) -> Vec<Vec<u8>> {
    let names = format!("{file}\0{attr}\0");
    let complen = names.len() + 9; // sizeof (struct xattr_buf) is 9
    let len = 37 + complen;
    let mut hdr = Vec::new();
    let field = |v: String, width: usize| {
        let mut b = v.into_bytes();
        b.resize(width, 0);
        b
    };
    hdr.extend(field("1.0".into(), 7));
    hdr.extend(field(format!("{len:09}"), 10));
    hdr.extend(field(format!("{complen:09}"), 10));
    hdr.extend(field(format!("{:09}", 0), 10));
    hdr.extend(field(format!("{:06}", names.len()), 7));
    hdr.push(b'0');
    hdr.extend(names.as_bytes());
    vec![
        member(format!("/dev/null/{attr}.hdr").as_bytes(), b'E', b"", &hdr),
        member(format!("/dev/null/{attr}").as_bytes(), b'E', b"", value),
    ]
}

#[test]
fn extended_attribute_entries_are_refused_naming_file_and_attribute() {
    for (attr, kind) in [
        ("user.note", "extended attribute `user.note`"),
        ("SUNWattr_rw", "extended system attributes `SUNWattr_rw`"),
    ] {
        let w = world();
        let mut members = vec![member(b"etc/motd", b'0', b"", b"hello\n")];
        members.extend(xattr_members("etc/motd", attr, b"value"));
        let err = unpack_hostile(&w, &archive(&members));
        let entry = format!("/dev/null/{attr}.hdr");
        assert_refused(err, &entry, &format!("{kind} of `etc/motd`"));
        assert_eq!(std::fs::read(w.root.join("etc/motd")).unwrap(), b"hello\n");
        assert!(!w.root.join("dev").exists());
    }
    // An `E` member whose header this reader cannot parse is still refused, not dropped.
    let w = world();
    let bytes = archive(&[member(b"/dev/null/x.hdr", b'E', b"", b"2.0\0")]);
    assert_refused(
        unpack_hostile(&w, &bytes),
        "/dev/null/x.hdr",
        "an extended attribute",
    );
}

#[test]
fn illumos_extended_header_paths_are_checked_too() {
    // An illumos `X` header (tar.c, `get_xdata`: `"%d %s=%s\n"` records) naming a path
    // that climbs out, or a hard link target that does.
    let record = |key: &str, value: &str| {
        let rest = key.len() + value.len() + 3;
        let len = rest + (rest + 2).to_string().len();
        format!("{len} {key}={value}\n")
    };
    let cases = [
        (b'0', record("path", "a/../../outside/sentinel"), "`..`"),
        (b'1', record("linkpath", "../outside/sentinel"), "`..`"),
    ];
    for (kind, rec, reason) in cases {
        let w = world();
        let bytes = archive(&[
            member(b"x", b'X', b"", rec.as_bytes()),
            member(
                b"innocent",
                kind,
                b"",
                if kind == b'0' { b"pwned" } else { b"" },
            ),
        ]);
        let want = if kind == b'0' {
            "a/../../outside/sentinel"
        } else {
            "innocent"
        };
        assert_refused(unpack_hostile(&w, &bytes), want, reason);
    }
}
