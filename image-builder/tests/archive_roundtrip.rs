//! Our archives against GNU tar in both directions, every format, and reproducibility.

use crate::common;

use std::path::Path;

use common::*;
use confine::Root;
use image_builder::archive::{pack, unpack, PackOptions, Progress, UnpackOptions};

fn our_pack(src: &Path, archive: &Path, opts: &PackOptions) -> Vec<Progress> {
    let root = Root::open(src).unwrap();
    let mut seen = Vec::new();
    pack(&root, archive, opts, &mut |p| seen.push(p)).unwrap();
    seen
}

fn our_unpack(archive: &Path, dst: &Path) -> Vec<Progress> {
    let root = Root::open(dst).unwrap();
    let mut seen = Vec::new();
    unpack(archive, &root, &UnpackOptions::default(), &mut |p| {
        seen.push(p)
    })
    .unwrap();
    seen
}

#[test]
fn our_tar_gz_unpacks_with_gnu_tar() {
    let Some(tar) = tool("/usr/bin/tar") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let (src, dst) = (t.path().join("src"), t.path().join("dst"));
    std::fs::create_dir_all(&dst).unwrap();
    make_tree(&src, false);
    let archive = t.path().join("image.tar.gz");
    let progress = our_pack(&src, &archive, &PackOptions::default());
    let last = progress.last().unwrap();
    assert_eq!(last.done, last.total);
    assert!(last.total > 3 << 19, "{last:?}");
    if let Some(gzip) = tool("/usr/bin/gzip") {
        run(&gzip, &["-t", archive.to_str().unwrap()]);
    }
    run(
        &tar,
        &[
            "-x",
            "-z",
            "-p",
            "--numeric-owner",
            "-f",
            archive.to_str().unwrap(),
            "-C",
            dst.to_str().unwrap(),
        ],
    );
    assert_same(&snapshot(&src), &snapshot(&dst));
    // GNU tar lists the names we wrote, long ones included.
    let listing = run(&tar, &["-t", "-z", "-f", archive.to_str().unwrap()]);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with(LONG_DIR) && l.ends_with(".txt")),
        "{listing}"
    );
    assert_eq!(listing.lines().next(), Some("./"));
}

#[test]
fn gnu_tar_gz_unpacks_with_ours_twice() {
    let Some(tar) = tool("/usr/bin/tar") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let (src, dst) = (t.path().join("src"), t.path().join("dst"));
    std::fs::create_dir_all(&dst).unwrap();
    make_tree(&src, false);
    let archive = t.path().join("gnu.tgz");
    run(
        &tar,
        &[
            "-c",
            "-z",
            "--numeric-owner",
            "-f",
            archive.to_str().unwrap(),
            "-C",
            src.to_str().unwrap(),
            ".",
        ],
    );
    our_unpack(&archive, &dst);
    let want = snapshot(&src);
    assert_same(&want, &snapshot(&dst));
    // Idempotent: a second unpack over the first leaves the same tree, whether files are
    // written on the unpacking thread or by several writers.
    our_unpack(&archive, &dst);
    assert_same(&want, &snapshot(&dst));
    for writers in [0, 3] {
        let root = Root::open(&dst).unwrap();
        let opts = UnpackOptions {
            writers,
            ..Default::default()
        };
        unpack(&archive, &root, &opts, &mut |_| {}).unwrap();
        assert_same(&want, &snapshot(&dst));
        let fresh = t.path().join(format!("fresh-{writers}"));
        std::fs::create_dir(&fresh).unwrap();
        unpack(&archive, &Root::open(&fresh).unwrap(), &opts, &mut |_| {}).unwrap();
        assert_same(&want, &snapshot(&fresh));
    }
}

#[test]
fn every_format_round_trips_and_matches_the_real_tool() {
    let Some(tar) = tool("/usr/bin/tar") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src, false);
    let want = snapshot(&src);
    for (name, flag, tool_path) in [
        ("i.tar", None, None),
        ("i.tar.zst", Some("--zstd"), Some("/usr/bin/zstd")),
        ("i.tar.xz", Some("--xz"), Some("/usr/bin/xz")),
    ] {
        let archive = t.path().join(name);
        our_pack(
            &src,
            &archive,
            &PackOptions {
                threads: 2,
                ..Default::default()
            },
        );
        let ours = t.path().join(format!("ours-{name}"));
        std::fs::create_dir(&ours).unwrap();
        our_unpack(&archive, &ours);
        assert_same(&want, &snapshot(&ours));
        if tool_path.is_some_and(|p| tool(p).is_none()) {
            continue;
        }
        let theirs = t.path().join(format!("gnu-{name}"));
        std::fs::create_dir(&theirs).unwrap();
        let mut args = vec!["-x", "-p", "--numeric-owner"];
        args.extend(flag);
        args.extend([
            "-f",
            archive.to_str().unwrap(),
            "-C",
            theirs.to_str().unwrap(),
        ]);
        run(&tar, &args);
        assert_same(&want, &snapshot(&theirs));
    }
}

#[test]
fn packing_is_reproducible_and_clamps_to_source_date_epoch() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    make_tree(&a, false);
    make_tree(&b, true);
    let epoch = 1_500_000_000;
    let opts = |threads| PackOptions {
        source_date_epoch: Some(epoch),
        threads,
        ..Default::default()
    };
    let (x, y, z) = (
        t.path().join("x.tar.gz"),
        t.path().join("y.tar.gz"),
        t.path().join("z.tar.gz"),
    );
    our_pack(&a, &x, &opts(1));
    our_pack(&b, &y, &opts(2));
    our_pack(&a, &z, &opts(0));
    let bytes = std::fs::read(&x).unwrap();
    assert!(
        bytes == std::fs::read(&y).unwrap(),
        "two copies of one tree packed differently"
    );
    assert!(
        bytes == std::fs::read(&z).unwrap(),
        "thread count changed the output"
    );
    for name in ["r1.tar.zst", "r1.tar.xz", "r1.tar"] {
        let (p, q) = (t.path().join(name), t.path().join(format!("again-{name}")));
        our_pack(&a, &p, &opts(2));
        our_pack(&b, &q, &opts(2));
        assert!(
            std::fs::read(&p).unwrap() == std::fs::read(&q).unwrap(),
            "{name} differs"
        );
    }
    let dst = t.path().join("dst");
    std::fs::create_dir(&dst).unwrap();
    our_unpack(&x, &dst);
    let got = snapshot(&dst);
    assert_eq!(got["home/user/new"].mtime, epoch);
    assert_eq!(got["etc/passwd"].mtime, 1_000_001);
}

#[test]
fn include_packs_only_the_named_paths() {
    let Some(tar) = tool("/usr/bin/tar") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src, false);
    let archive = t.path().join("part.tar");
    let opts = PackOptions {
        include: vec!["/etc".into(), "usr/bin".into()],
        ..Default::default()
    };
    our_pack(&src, &archive, &opts);
    let listing = run(&tar, &["-t", "-f", archive.to_str().unwrap()]);
    let names: Vec<&str> = listing.lines().collect();
    assert_eq!(
        names,
        [
            "etc/",
            "etc/empty",
            "etc/localtime",
            "etc/passwd",
            "etc/shadow",
            "usr/bin/",
            "usr/bin/dir",
            "usr/bin/ls",
            "usr/bin/su",
            "usr/bin/vdir",
            "usr/bin/wall",
        ]
    );
}

#[test]
fn archive_inside_the_packed_tree_is_left_out() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src, false);
    let archive = src.join("tmp/self.tar");
    our_pack(&src, &archive, &PackOptions::default());
    let dst = t.path().join("dst");
    std::fs::create_dir(&dst).unwrap();
    our_unpack(&archive, &dst);
    assert!(!dst.join("tmp/self.tar").exists());
    assert!(!dst.join("tmp/.self.tar.partial").exists());
}

#[test]
fn gzip_step_output_reads_back_with_gzip_and_replaces_the_target() {
    let Some(gzip) = tool("/usr/bin/gzip") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("img");
    std::fs::create_dir_all(img.join("platform")).unwrap();
    let outside = t.path().join("host-file");
    std::fs::write(&outside, b"host").unwrap();
    // A symlink at the target must be replaced, not written through.
    std::os::unix::fs::symlink(&outside, img.join("platform/boot_archive.gz")).unwrap();
    let src = t.path().join("boot_archive");
    let data = bulk(2_500_000, 7);
    std::fs::write(&src, &data).unwrap();
    let root = Root::open(&img).unwrap();
    let target = Path::new("/platform/boot_archive.gz");
    let size = image_builder::archive::gzip_into(&src, &root, target, 0o644, 2).unwrap();
    let on_disk = img.join("platform/boot_archive.gz");
    assert!(std::fs::symlink_metadata(&on_disk).unwrap().is_file());
    assert_eq!(std::fs::metadata(&on_disk).unwrap().len(), size);
    assert_eq!(std::fs::read(&outside).unwrap(), b"host");
    run(&gzip, &["-t", on_disk.to_str().unwrap()]);
    let copy = t.path().join("copy.gz");
    std::fs::copy(&on_disk, &copy).unwrap();
    run(&gzip, &["-d", copy.to_str().unwrap()]);
    assert!(std::fs::read(t.path().join("copy")).unwrap() == data);
    // Running the step again gives the same bytes.
    let before = std::fs::read(&on_disk).unwrap();
    image_builder::archive::gzip_into(&src, &root, target, 0o644, 1).unwrap();
    assert!(std::fs::read(&on_disk).unwrap() == before);
}

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

#[test]
fn our_archives_unpack_with_bsdtar() {
    // Every kind of entry (devices and foreign owners as root), every compression.
    let Some(bsdtar) = tool("/usr/bin/bsdtar") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src, false);
    let want = snapshot(&src);
    for name in ["b.tar", "b.tar.gz", "b.tar.zst", "b.tar.xz"] {
        let archive = t.path().join(name);
        our_pack(&src, &archive, &PackOptions::default());
        let dst = t.path().join(format!("bsd-{name}"));
        std::fs::create_dir(&dst).unwrap();
        let (a, d) = (archive.to_str().unwrap(), dst.to_str().unwrap());
        run(&bsdtar, &["-x", "-p", "--numeric-owner", "-f", a, "-C", d]);
        assert_same(&want, &snapshot(&dst));
    }
}
