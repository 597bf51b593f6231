//! Our archives against GNU tar in both directions, every format, and reproducibility.

use crate::common;

use std::path::Path;

use common::*;
use confine::Root;
use image_builder::archive::{pack, unpack, PackOptions, Progress, UnpackOptions};

pub(crate) fn our_pack(src: &Path, archive: &Path, opts: &PackOptions) -> Vec<Progress> {
    let root = Root::open(src).unwrap();
    let mut seen = Vec::new();
    pack(&root, archive, opts, &mut |p| seen.push(p)).unwrap();
    seen
}

pub(crate) fn our_unpack(archive: &Path, dst: &Path) -> Vec<Progress> {
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
