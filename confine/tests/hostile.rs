//! Hostile image contents must never make a [`Root`] read or change anything outside it.
//! Every test runs once per resolver: the kernel's `openat2` (when this kernel has it) and
//! the portable walk used on illumos.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use confine::{Resolver, Root};

struct World {
    _tmp: tempfile::TempDir,
    outside: PathBuf,
    root_dir: PathBuf,
}

/// A temp dir holding `outside/` (the host, with a sentinel file and directory) and
/// `root/` (the image).
fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("sentinel"), b"host data").unwrap();
    fs::set_permissions(outside.join("sentinel"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::create_dir(outside.join("dir")).unwrap();
    fs::write(outside.join("dir/inner"), b"host inner").unwrap();
    let root_dir = tmp.path().join("root");
    fs::create_dir(&root_dir).unwrap();
    World {
        _tmp: tmp,
        outside,
        root_dir,
    }
}

/// Everything observable about the host side: names, kinds, contents, modes, owners, mtimes.
/// Mode, uid, gid, mtime seconds and nanoseconds, and content of one host file.
type Seen = (u32, u32, u32, i64, i64, Vec<u8>);

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Seen> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for ent in fs::read_dir(&d).unwrap() {
            let p = ent.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let content = if m.is_file() {
                fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            if m.is_dir() {
                stack.push(p.clone());
            }
            out.insert(
                p,
                (
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.mtime(),
                    m.mtime_nsec(),
                    content,
                ),
            );
        }
    }
    out
}

fn resolvers() -> Vec<Resolver> {
    let probe = tempfile::tempdir().unwrap();
    let mut v = vec![Resolver::Walk];
    match Root::open_with(probe.path(), Resolver::Openat2) {
        Ok(_) => v.push(Resolver::Openat2),
        Err(e) => println!("skipped: openat2 resolver not available here ({e})"),
    }
    v
}

fn each(test: impl Fn(&World, &Root)) {
    for r in resolvers() {
        let w = world();
        let root = Root::open_with(&w.root_dir, r).unwrap();
        assert_eq!(root.resolver(), r);
        let before = snapshot(&w.outside);
        test(&w, &root);
        assert_eq!(before, snapshot(&w.outside), "host side changed with {r:?}");
    }
}

#[test]
fn absolute_symlink_resolves_to_the_image_copy() {
    each(|w, root| {
        fs::create_dir(w.root_dir.join("etc")).unwrap();
        fs::write(w.root_dir.join("etc/passwd"), b"image passwd").unwrap();
        symlink("/etc/passwd", w.root_dir.join("pw")).unwrap();
        assert_eq!(root.read("pw").unwrap(), b"image passwd");
        assert_eq!(root.read("/pw").unwrap(), b"image passwd");

        // An absolute symlink naming the host directory leads to that path *inside* the image.
        symlink(&w.outside, w.root_dir.join("hostdir")).unwrap();
        let err = root.read("hostdir/sentinel").unwrap_err();
        assert!(err.is_not_found(), "{err}");
        let err = root
            .write_atomic("hostdir/sentinel", b"pwned", 0o644)
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert_eq!(err.image_path(), Some(Path::new("hostdir/sentinel")));
        assert!(err.to_string().contains("hostdir/sentinel"), "{err}");
    });
}

#[test]
fn dotdot_is_clamped_at_the_root() {
    each(|w, root| {
        fs::create_dir(w.root_dir.join("outside")).unwrap();
        fs::write(w.root_dir.join("outside/sentinel"), b"image copy").unwrap();
        assert_eq!(root.read("../outside/sentinel").unwrap(), b"image copy");
        assert_eq!(
            root.read("/../../../outside/sentinel").unwrap(),
            b"image copy"
        );
        symlink("../../../../../../..", w.root_dir.join("up")).unwrap();
        assert_eq!(root.read("up/outside/sentinel").unwrap(), b"image copy");
        root.write_atomic("up/../outside/sentinel", b"rewritten", 0o600)
            .unwrap();
        assert_eq!(
            fs::read(w.root_dir.join("outside/sentinel")).unwrap(),
            b"rewritten"
        );
        root.create_dir_all("up/../../outside/made/deeper", 0o755)
            .unwrap();
        assert!(w.root_dir.join("outside/made/deeper").is_dir());
        assert!(!w.outside.join("made").exists());
    });
}

#[test]
fn symlinked_parent_directory_stays_inside() {
    each(|w, root| {
        symlink("../outside", w.root_dir.join("rel")).unwrap();
        symlink(&w.outside, w.root_dir.join("abs")).unwrap();
        // While the links dangle inside the image, nothing can be made through them.
        assert!(root
            .create_dir_all("rel/dir/new", 0o750)
            .unwrap_err()
            .is_not_found());
        assert!(root
            .write_atomic("abs/dir/inner", b"x", 0o644)
            .unwrap_err()
            .is_not_found());
        for link in ["rel", "abs"] {
            let made = w.root_dir.join(w.outside.strip_prefix("/").unwrap());
            let made = if link == "rel" {
                w.root_dir.join("outside")
            } else {
                made
            };
            fs::create_dir_all(&made).unwrap();
            let target = format!("{link}/dir/new");
            root.create_dir_all(&target, 0o750).unwrap();
            assert!(made.join("dir/new").is_dir(), "{link}");
            root.write_atomic(format!("{link}/dir/inner"), b"image", 0o644)
                .unwrap();
            assert_eq!(fs::read(made.join("dir/inner")).unwrap(), b"image");
            root.symlink("/x", format!("{link}/dir/s")).unwrap();
            root.mkfifo(format!("{link}/dir/f"), 0o600).unwrap();
            root.remove_dir_all(format!("{link}/dir")).unwrap();
            assert!(!made.join("dir").exists());
        }
    });
}

#[test]
fn symlink_loop_fails_cleanly() {
    each(|w, root| {
        symlink("b", w.root_dir.join("a")).unwrap();
        symlink("/a", w.root_dir.join("b")).unwrap();
        symlink("self/x", w.root_dir.join("self")).unwrap();
        for p in ["a", "a/x", "self", "self/y"] {
            let err = root.read(p).unwrap_err();
            assert_eq!(
                err.raw_os_error(),
                Some(rustix::io::Errno::LOOP.raw_os_error()),
                "{p}: {err}"
            );
        }
        assert!(root.write_atomic("a/x", b"x", 0o644).is_err());
        assert!(root.create_dir_all("self/d", 0o755).is_err());
    });
}

#[test]
fn final_symlink_is_never_followed_by_changes() {
    each(|w, root| {
        let sentinel = w.outside.join("sentinel");
        // `..`-climbing relative link and absolute host link, both at the image's top.
        symlink("../outside/sentinel", w.root_dir.join("rel")).unwrap();
        symlink(&sentinel, w.root_dir.join("abs")).unwrap();
        symlink(&w.outside, w.root_dir.join("absdir")).unwrap();
        for link in ["rel", "abs"] {
            root.set_mode(link, 0o4777).unwrap();
            root.set_owner(link, Some(4242), Some(4343)).unwrap();
            let m = root.metadata(link).unwrap();
            assert!(m.is_symlink());
            assert_eq!((m.uid, m.gid), (4242, 4343));
            root.set_times(link, None, Some(confine::FileTime::from_secs(1)))
                .unwrap();
            assert_eq!(root.metadata(link).unwrap().mtime.secs, 1);
            root.hard_link(link, format!("{link}.hard")).unwrap();
            assert!(root.metadata(format!("{link}.hard")).unwrap().is_symlink());
        }
        // Writing over a symlink replaces the link, it does not write through it.
        root.write_atomic("abs", b"replaced", 0o644).unwrap();
        assert!(root.metadata("abs").unwrap().is_file());
        assert_eq!(fs::read(w.root_dir.join("abs")).unwrap(), b"replaced");
        let err = root.create_file("rel", 0o644).unwrap_err();
        assert!(err.is_already_exists(), "{err}");
        root.remove_file("rel").unwrap();
        assert!(root.try_metadata("rel").unwrap().is_none());
        // Removing a tree that holds a symlink to a host directory removes only the link.
        root.create_dir_all("tree/sub", 0o755).unwrap();
        root.symlink(&w.outside, "tree/sub/host").unwrap();
        root.symlink("../../../outside/dir", "tree/rel").unwrap();
        root.remove_dir_all("tree").unwrap();
        root.remove_dir_all("absdir").unwrap();
        assert!(root.try_metadata("tree").unwrap().is_none());
        assert!(root.try_metadata("absdir").unwrap().is_none());
        assert!(root.remove_dir_all("/").is_err());
        assert!(root.remove_dir_all("..").is_err());
    });
}
