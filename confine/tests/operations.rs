//! What each operation does to a real directory.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use confine::{FileKind, FileTime, NodeKind, Resolver, Root};

fn roots() -> Vec<(tempfile::TempDir, Root)> {
    let mut v = Vec::new();
    for r in [Resolver::Auto, Resolver::Walk] {
        let t = tempfile::tempdir().unwrap();
        let root = Root::open_with(t.path(), r).unwrap();
        v.push((t, root));
    }
    v
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn modes_are_exact_whatever_the_umask() {
    for (t, root) in roots() {
        root.create_dir_all("a/b/c", 0o1777).unwrap();
        for d in ["a", "a/b", "a/b/c"] {
            assert_eq!(
                fs::metadata(t.path().join(d)).unwrap().mode() & 0o7777,
                0o1777,
                "{d}"
            );
        }
        root.write_atomic("a/suid", b"#!/bin/sh\n", 0o4755).unwrap();
        assert_eq!(
            fs::metadata(t.path().join("a/suid")).unwrap().mode() & 0o7777,
            0o4755
        );
        let mut f = root.create_file("a/sgid", 0o2711).unwrap();
        std::io::Write::write_all(&mut f, b"x").unwrap();
        assert_eq!(root.metadata("a/sgid").unwrap().mode, 0o2711);
        root.set_mode("a/sgid", 0o640).unwrap();
        assert_eq!(root.metadata("a/sgid").unwrap().mode, 0o640);
        root.create_dir("a/plain", 0o700).unwrap();
        assert_eq!(root.metadata("a/plain").unwrap().mode, 0o700);
        // Existing directories keep their mode.
        root.create_dir_all("a/b", 0o700).unwrap();
        assert_eq!(root.metadata("a/b").unwrap().mode, 0o1777);
    }
}

#[test]
fn write_atomic_replaces_and_leaves_no_temp_files() {
    for (t, root) in roots() {
        root.write_atomic("/f", b"one", 0o644).unwrap();
        root.write_atomic("f", b"two", 0o600).unwrap();
        assert_eq!(root.read("f").unwrap(), b"two");
        assert_eq!(root.metadata("f").unwrap().mode, 0o600);
        let names: Vec<_> = root
            .read_dir("/")
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f")]);
        assert!(t.path().join("f").is_file());
    }
}

#[test]
fn links_nodes_times_and_listing() {
    for (t, root) in roots() {
        root.write_atomic("file", b"data", 0o644).unwrap();
        root.hard_link("file", "/hard").unwrap();
        root.symlink("file", "sym").unwrap();
        root.mkfifo("fifo", 0o620).unwrap();
        assert!(fs::metadata(t.path().join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        assert_eq!(root.metadata("fifo").unwrap().mode, 0o620);
        assert_eq!(root.metadata("file").unwrap().nlink, 2);
        assert_eq!(
            root.read_link("sym").unwrap(),
            std::path::PathBuf::from("file")
        );
        assert_eq!(root.read("sym").unwrap(), b"data");
        root.set_times(
            "file",
            Some(FileTime::from_secs(5)),
            Some(FileTime {
                secs: 1_000_000,
                nanos: 7,
            }),
        )
        .unwrap();
        let m = fs::metadata(t.path().join("file")).unwrap();
        assert_eq!((m.mtime(), m.mtime_nsec(), m.atime()), (1_000_000, 7, 5));
        if is_root() {
            root.mknod("null", NodeKind::CharDevice, 0o666, 1, 3)
                .unwrap();
            root.mknod("blk", NodeKind::BlockDevice, 0o600, 7, 0)
                .unwrap();
            let m = root.metadata("null").unwrap();
            assert_eq!(
                (m.kind, m.rdev_major, m.rdev_minor, m.mode),
                (FileKind::CharDevice, 1, 3, 0o666)
            );
            assert_eq!(root.metadata("blk").unwrap().kind, FileKind::BlockDevice);
            root.set_owner("file", Some(12), Some(34)).unwrap();
            assert_eq!((m.uid, m.gid), (0, 0));
            let f = fs::metadata(t.path().join("file")).unwrap();
            assert_eq!((f.uid(), f.gid()), (12, 34));
        } else {
            println!("skipped: device nodes and chown need root");
        }
        let listing: Vec<_> = root
            .read_dir("")
            .unwrap()
            .into_iter()
            .map(|e| (e.name.into_string().unwrap(), e.metadata.kind))
            .collect();
        let mut expected = vec![
            ("fifo".to_string(), FileKind::Fifo),
            ("file".to_string(), FileKind::File),
            ("hard".to_string(), FileKind::File),
            ("sym".to_string(), FileKind::Symlink),
        ];
        if is_root() {
            expected.push(("blk".into(), FileKind::BlockDevice));
            expected.push(("null".into(), FileKind::CharDevice));
            expected.sort_by(|a, b| a.0.cmp(&b.0));
        }
        assert_eq!(listing, expected);
        root.remove_file("hard").unwrap();
        assert_eq!(root.metadata("file").unwrap().nlink, 1);
        let err = root.remove_file("nope/x").unwrap_err();
        assert!(err.is_not_found());
        assert!(err.to_string().contains("nope/x"), "{err}");
        root.create_dir("d", 0o755).unwrap();
        root.remove_dir("d").unwrap();
        assert!(root.try_metadata("d").unwrap().is_none());
    }
}
