//! Archives in the shapes other tools write and read: long names, hard and symbolic
//! links, large ids and sub-second times read back by illumos-format, GNU and bsd tar;
//! archives written by illumos tar (its extended headers, ACLs); GNU sparse files.

use crate::common;

use std::path::Path;

use common::*;
use image_builder::archive::PackOptions;

use crate::archive_roundtrip::{our_pack, our_unpack};

/// Names past ustar's 100 and 255 bytes, symlink and hard link targets past 100 and 255,
/// owners past the 7-digit uid field, times past the 11-digit mtime field and before 1970.
fn make_long_tree(dir: &Path) -> Vec<String> {
    let deep_dir = format!("opt/{}", "c".repeat(200));
    let deep_file = format!("{deep_dir}/{}/{}.bin", "d".repeat(120), "e".repeat(100));
    let split_file = format!("opt/{}/{}.txt", "a".repeat(150), "b".repeat(80));
    let link255 = format!("../{}", "t".repeat(300));
    let link101 = "x".repeat(101);
    std::fs::create_dir_all(dir.join(&deep_file).parent().unwrap()).unwrap();
    std::fs::create_dir_all(dir.join(&split_file).parent().unwrap()).unwrap();
    std::fs::write(dir.join(&deep_file), b"deep file\n").unwrap();
    std::fs::write(dir.join(&split_file), b"split name\n").unwrap();
    std::os::unix::fs::symlink(&link255, dir.join("opt/link255")).unwrap();
    std::os::unix::fs::symlink(&link101, dir.join("opt/link101")).unwrap();
    // Packed after `deep_file` (names sort so): a hard link whose target is 431 bytes.
    std::fs::hard_link(dir.join(&deep_file), dir.join("opt/hard")).unwrap();
    if is_root() {
        std::os::unix::fs::lchown(dir.join(&deep_file), Some(3_000_000), Some(2_500_000)).unwrap();
    }
    let set = |p: &str, secs: i64| {
        let t = rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        };
        let ts = rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            dir.join(p),
            &ts,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    };
    set(&deep_file, 9_000_000_000);
    set(&split_file, 1_500_000_000);
    set("opt/link255", 1_500_000_001);
    set(&format!("{deep_dir}/{}", "d".repeat(120)), 1_500_000_002);
    set(&deep_dir, -86_400);
    set(&format!("opt/{}", "a".repeat(150)), 1_500_000_003);
    set("opt", 1_500_000_004);
    vec![deep_dir, deep_file, split_file, link255, link101]
}

#[test]
fn long_names_links_ids_and_times_read_back_with_illumos_gnu_and_bsd_tar() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let names = make_long_tree(&src);
    let (deep_dir, deep_file, split_file, link255, link101) =
        (&names[0], &names[1], &names[2], &names[3], &names[4]);
    let want = snapshot(&src);
    let archive = t.path().join("long.tar");
    our_pack(&src, &archive, &PackOptions::default());
    let bytes = std::fs::read(&archive).unwrap();

    // As illumos tar xeEp@/f reads it: every entry accepted, by its full name.
    let read = illumos_tar::read(&bytes).unwrap_or_else(|e| panic!("illumos tar: {e}"));
    let get = |n: &str| {
        read.get(n.as_bytes()).unwrap_or_else(|| {
            panic!(
                "{n} not read; read: {:?}",
                read.keys()
                    .map(|k| String::from_utf8_lossy(k))
                    .collect::<Vec<_>>()
            )
        })
    };
    let f = get(deep_file);
    assert_eq!(
        (f.typeflag, f.size, &f.data[..]),
        (b'0', 10, &b"deep file\n"[..])
    );
    assert_eq!(f.mtime, 9_000_000_000);
    if is_root() {
        assert_eq!((f.uid, f.gid), (3_000_000, 2_500_000));
    }
    assert_eq!(get(&format!("{deep_dir}/")).typeflag, b'5');
    assert_eq!(get(&format!("{deep_dir}/")).mtime, -86_400);
    assert_eq!(&get(split_file).data[..], b"split name\n");
    let l = get("opt/link255");
    assert_eq!((l.typeflag, &l.link[..]), (b'2', link255.as_bytes()));
    assert_eq!(&get("opt/link101").link[..], link101.as_bytes());
    let h = get("opt/hard");
    assert_eq!((h.typeflag, &h.link[..]), (b'1', deep_file.as_bytes()));
    // Every entry in the tree, and nothing else.
    let mut seen: Vec<String> = read
        .keys()
        .map(|k| String::from_utf8(k.clone()).unwrap())
        .filter(|k| k != "./")
        .map(|k| k.trim_end_matches('/').to_string())
        .collect();
    seen.sort();
    assert_eq!(seen, want.keys().cloned().collect::<Vec<_>>());

    // Python's tarfile, a third reader, sees the same names, targets, sizes and times.
    let a = archive.to_str().unwrap();
    if let Some(python) = tool("/usr/bin/python3") {
        let script = "import sys, tarfile\n\
            for m in tarfile.open(sys.argv[1]):\n\
            \x20   print(repr((m.name, m.linkname, m.size, m.uid, m.gid, int(m.mtime))))";
        let listing = run(&python, &["-c", script, a]);
        let mut lines: Vec<&str> = listing.lines().collect();
        lines.sort();
        let mut from_illumos: Vec<String> = read
            .iter()
            .map(|(k, r)| {
                let name = String::from_utf8(k.clone()).unwrap();
                let name = match name.trim_end_matches('/') {
                    "." => ".".to_string(),
                    n => n.to_string(),
                };
                let link = String::from_utf8(r.link.clone()).unwrap();
                format!(
                    "({name:?}, {link:?}, {}, {}, {}, {})",
                    r.size, r.uid, r.gid, r.mtime
                )
                .replace('"', "'")
            })
            .collect();
        from_illumos.sort();
        assert_eq!(lines, from_illumos);
    }
    let ours = t.path().join("ours");
    std::fs::create_dir(&ours).unwrap();
    our_unpack(&archive, &ours);
    assert_same(&want, &snapshot(&ours));
    for (tool_path, args) in [
        (
            "/usr/bin/tar",
            vec!["-x", "-p", "--numeric-owner", "-f", a, "-C"],
        ),
        (
            "/usr/bin/bsdtar",
            vec!["-x", "-p", "--numeric-owner", "-f", a, "-C"],
        ),
    ] {
        let Some(program) = tool(tool_path) else {
            continue;
        };
        let dst = t.path().join(program.file_name().unwrap());
        std::fs::create_dir(&dst).unwrap();
        let mut args = args.clone();
        args.push(dst.to_str().unwrap());
        run(&program, &args);
        assert_same(&want, &snapshot(&dst));
    }
    // And the other way: the same tree packed by GNU tar as POSIX pax and by bsdtar.
    let s = src.to_str().unwrap();
    for (tool_path, name, args) in [
        (
            "/usr/bin/tar",
            "gnu-pax.tar",
            vec!["-c", "--format=posix", "-f"],
        ),
        ("/usr/bin/bsdtar", "bsd.tar", vec!["-c", "-f"]),
    ] {
        let Some(program) = tool(tool_path) else {
            continue;
        };
        let theirs = t.path().join(name);
        let mut args = args.clone();
        args.extend([theirs.to_str().unwrap(), "-C", s, "."]);
        run(&program, &args);
        let dst = t.path().join(format!("ours-from-{name}"));
        std::fs::create_dir(&dst).unwrap();
        our_unpack(&theirs, &dst);
        assert_same(&want, &snapshot(&dst));
    }
}

/// An archive as illumos `tar cEf` writes it (tar.c `putfile`, `build_dblock`, `tomodes`):
/// an `X` header before every entry with at least `mtime`; names that do not fit split as
/// `putfile` splits them, the prefix becoming `/tmp/PaxHeaders.<pid>` when the directories
/// alone pass 155 bytes; directories without a trailing `/` (`E` implies `P`); owner names
/// in the header; ids past 7 octal digits as `UID_NOBODY` with the real id in the `X`
/// header; and the size field 0 with the size in the `X` header, as `tomodes` writes files
/// past `TAR_OFFSET_MAX` (here with a small file, which takes the same path on reading).
fn illumos_archive(with_acl: bool) -> (Vec<u8>, String) {
    use illumos_tar::{finish, member, x_header, Block};
    let a = "a".repeat(120);
    let b = "b".repeat(120);
    let deep = format!("./opt/{a}/{b}/c.txt");
    let mut m = Vec::new();
    let mut with_x = |blk: Block, records: &[(&str, &[u8])], data: &[u8]| {
        m.push(x_header(&blk, 123_456_789, records));
        m.push(member(&blk, data));
    };
    let dir = |name: &str| Block {
        mode: 0o755,
        ..Block::new(name, b'5')
    };
    with_x(dir("."), &[], b"");
    with_x(dir("./opt"), &[], b"");
    let p = format!("./opt/{a}");
    with_x(
        Block {
            prefix: b"./opt".to_vec(),
            ..dir("3")
        },
        &[("path", p.as_bytes())],
        b"",
    );
    let p = format!("./opt/{a}/{b}");
    with_x(
        Block {
            prefix: format!("./opt/{a}").into_bytes(),
            ..dir("4")
        },
        &[("path", p.as_bytes())],
        b"",
    );
    let deep_file = Block {
        prefix: b"/tmp/PaxHeaders.1234".to_vec(),
        size: 10,
        ..Block::new("c.txt", b'0')
    };
    with_x(deep_file, &[("path", deep.as_bytes())], b"deep file\n");
    let big = Block {
        uid: 60001,
        gid: 60001,
        size: 0,
        mode: 0o600,
        ..Block::new("./opt/big", b'0')
    };
    with_x(
        big,
        &[("gid", b"2500000"), ("uid", b"3000000"), ("size", b"11")],
        b"eleven byte",
    );
    let target = format!("../{}", "t".repeat(150));
    with_x(
        Block {
            mode: 0o777,
            ..Block::new("./opt/link", b'2')
        },
        &[("linkpath", target.as_bytes())],
        b"",
    );
    with_x(
        Block::new("./opt/hard", b'1'),
        &[("linkpath", deep.as_bytes())],
        b"",
    );
    if with_acl {
        // put_extra_attributes writes the ACL's ancillary `A` member (write_ancillary: the
        // entry's header, typeflag A, the sec_attr records as data) after build_dblock
        // wrote the `X`, so the `X` describes the entry after the `A` (wantit).
        let long = format!("./opt/{a}/acl.txt");
        let file = Block {
            prefix: format!("./opt/{a}").into_bytes(),
            size: 4,
            ..Block::new("acl.txt", b'0')
        };
        m.push(x_header(&file, 0, &[("path", long.as_bytes())]));
        let acl = b"1000004\0user::rw-,group::r--,mask:r--,other:---\0";
        let anc = Block {
            typeflag: b'A',
            size: acl.len() as u64,
            mode: 0o644 | 0o200,
            ..file.clone()
        };
        m.push(member(&anc, acl));
        m.push(member(&file, b"acl\n"));
    }
    (finish(&m), deep)
}

#[test]
fn archives_written_by_illumos_tar_unpack_by_their_extended_headers() {
    let t = tempfile::tempdir().unwrap();
    let (bytes, deep) = illumos_archive(false);
    // The input is what illumos tar itself reads back.
    let read = illumos_tar::read(&bytes).unwrap();
    assert_eq!(read[deep.as_bytes()].size, 10);
    let archive = t.path().join("illumos.tar");
    std::fs::write(&archive, &bytes).unwrap();
    let ours = t.path().join("ours");
    std::fs::create_dir(&ours).unwrap();
    our_unpack(&archive, &ours);
    let got = snapshot(&ours);
    let deep_rel = deep.trim_start_matches("./");
    assert_eq!(got[deep_rel].content, b"deep file\n");
    assert_eq!(got[deep_rel].mtime, 1_600_000_000);
    assert_eq!(got["opt/hard"].link_group.as_deref(), Some(deep_rel));
    assert_eq!(got["opt/big"].content, b"eleven byte");
    if is_root() {
        assert_eq!(
            (got["opt/big"].uid, got["opt/big"].gid),
            (3_000_000, 2_500_000)
        );
    }
    assert_eq!(
        got["opt/link"].content,
        format!("../{}", "t".repeat(150)).as_bytes()
    );
    assert_eq!(got.len(), 7, "{:?}", got.keys().collect::<Vec<_>>());
    // GNU tar and bsdtar read illumos tar's `X` as POSIX pax: all three agree.
    let a = archive.to_str().unwrap();
    for tool_path in ["/usr/bin/tar", "/usr/bin/bsdtar"] {
        let Some(program) = tool(tool_path) else {
            continue;
        };
        let dst = t.path().join(program.file_name().unwrap());
        std::fs::create_dir(&dst).unwrap();
        let d = dst.to_str().unwrap();
        run(&program, &["-x", "-p", "--numeric-owner", "-f", a, "-C", d]);
        let mut theirs = snapshot(&dst);
        if tool_path.ends_with("bsdtar") {
            // bsdtar 3.6 extracts a symlink whose target is only in the extended header,
            // the header's link field left empty as illumos tar leaves it (`putfile`:
            // `tchar`), as an empty file. Our packer also puts the target's first 100 bytes
            // in that field, and bsdtar reads our archives right (the test above).
            assert_eq!(theirs["opt/link"].kind, "file");
            theirs.insert("opt/link".into(), got["opt/link"].clone());
        }
        assert_same(&theirs, &got);
    }

    // With an ACL's ancillary member between an `X` and its entry, the `X` still names the
    // entry after it; the ACL itself is passed over.
    let (bytes, _) = illumos_archive(true);
    assert!(illumos_tar::read(&bytes).is_ok());
    let archive = t.path().join("acl.tar");
    std::fs::write(&archive, &bytes).unwrap();
    let dst = t.path().join("acl");
    std::fs::create_dir(&dst).unwrap();
    our_unpack(&archive, &dst);
    let got = snapshot(&dst);
    let acl = format!("opt/{}/acl.txt", "a".repeat(120));
    assert_eq!(got[&acl].content, b"acl\n");
    assert_eq!(got[&acl].mode, 0o644);
}

#[test]
fn gnu_sparse_files_with_extension_blocks_unpack() {
    // More data islands than a GNU header's four sparse slots, so GNU tar writes extension
    // blocks after the header: the reader must pass them through untouched.
    let Some(tar) = tool("/usr/bin/tar") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let f = std::fs::File::create(src.join("holes")).unwrap();
    for i in 0..10u64 {
        use std::os::unix::fs::FileExt;
        f.write_all_at(&bulk(4096, i), i << 20).unwrap();
    }
    drop(f);
    std::fs::write(src.join("after"), b"after the sparse file\n").unwrap();
    let archive = t.path().join("sparse.tar");
    let (a, s) = (archive.to_str().unwrap(), src.to_str().unwrap());
    run(&tar, &["-c", "-S", "--format=gnu", "-f", a, "-C", s, "."]);
    let bytes = std::fs::read(&archive).unwrap();
    assert!(
        bytes.chunks(512).any(|b| b[156] == b'S' && b[482] == 1),
        "no extended sparse header written"
    );
    // Then an entry with an illumos `X` header, which is only found where the reader
    // expects the next header.
    let mut bytes = bytes;
    while bytes.len() >= 512 && bytes[bytes.len() - 512..].iter().all(|b| *b == 0) {
        bytes.truncate(bytes.len() - 512);
    }
    let long = format!("./{}/{}", "l".repeat(150), "m".repeat(120));
    let entry = illumos_tar::Block {
        size: 5,
        ..illumos_tar::Block::new("m", b'0')
    };
    bytes.extend(illumos_tar::x_header(
        &entry,
        0,
        &[("path", long.as_bytes())],
    ));
    bytes.extend(illumos_tar::member(&entry, b"long\n"));
    bytes.extend([0u8; 1024]);
    std::fs::write(&archive, &bytes).unwrap();
    let dst = t.path().join("dst");
    std::fs::create_dir(&dst).unwrap();
    our_unpack(&archive, &dst);
    let (want, got) = (snapshot(&src), snapshot(&dst));
    assert_eq!(want["holes"].content, got["holes"].content);
    assert_eq!(got["after"].content, b"after the sparse file\n");
    assert_eq!(got[long.trim_start_matches("./")].content, b"long\n");
}
