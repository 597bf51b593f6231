//! The client and the mirror against a real 9P2000.L server (Debian's diod).

use crate::common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::{data, Diod};
use p9sync::msg::GETATTR_BASIC;
use p9sync::{sync, Options};

fn export() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn walk_getattr_and_read_return_the_file_bytes() {
    let exp = export();
    let body = data(1, 200_000);
    fs::create_dir_all(exp.path().join("a/b")).unwrap();
    fs::write(exp.path().join("a/b/blob"), &body).unwrap();
    let Some(d) = Diod::start(exp.path()) else {
        return;
    };
    let (mut c, root) = d.connect(8192);
    let f = c.walk(root, &[b"a", b"b", b"blob"]).unwrap();
    let attr = c.getattr(f, GETATTR_BASIC).unwrap();
    assert_eq!(attr.size, body.len() as u64);
    assert_eq!(attr.mode & 0o170000, 0o100000);
    let (_, iounit) = c.lopen(f, 0).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0; 65536];
    loop {
        let n = c.read(f, got.len() as u64, iounit, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, body);
    c.clunk(f).unwrap();
    let missing = c.walk(root, &[b"a", b"nope"]).unwrap_err();
    assert_eq!(missing.errno(), Some(2), "{missing}");
}

#[test]
fn walk_deeper_than_one_twalk_is_split() {
    let exp = export();
    let names: Vec<String> = (0..40).map(|i| format!("d{i}")).collect();
    let deep = names.iter().fold(exp.path().to_owned(), |p, n| p.join(n));
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("leaf"), b"bottom").unwrap();
    let Some(d) = Diod::start(exp.path()) else {
        return;
    };
    let (mut c, root) = d.connect(65536);
    let mut path: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
    path.push(b"leaf");
    let f = c.walk(root, &path).unwrap();
    assert_eq!(c.getattr(f, GETATTR_BASIC).unwrap().size, 6);
    c.clunk(f).unwrap();
}

#[test]
fn readdir_of_a_large_directory_takes_several_calls_and_lists_everything() {
    let exp = export();
    let want: BTreeSet<String> = (0..5000)
        .map(|i| format!("entry-with-a-longish-name-{i:05}"))
        .collect();
    for n in &want {
        fs::write(exp.path().join(n), b"").unwrap();
    }
    let Some(d) = Diod::start(exp.path()) else {
        return;
    };
    let (mut c, root) = d.connect(8192);
    let dir = c.walk(root, &[]).unwrap();
    c.lopen(dir, 0).unwrap();
    let (mut offset, mut calls, mut got) = (0, 0, BTreeSet::new());
    loop {
        let batch = c.readdir(dir, offset).unwrap();
        let Some(last) = batch.last() else { break };
        offset = last.offset;
        calls += 1;
        got.extend(
            batch
                .into_iter()
                .map(|e| String::from_utf8(e.name).unwrap()),
        );
    }
    got.remove(".");
    got.remove("..");
    assert_eq!(got, want);
    assert!(
        calls > 20,
        "5000 entries in 8 KiB replies need many calls, got {calls}"
    );
    c.clunk(dir).unwrap();
    assert_eq!(c.list(root, 1 << 20).unwrap().len(), 5002);
}

/// Builds a small plugin tree: executables, a private file, nested and read-only
/// directories, relative, absolute and dangling symlinks.
fn plugin_tree(root: &Path) {
    fs::create_dir_all(root.join("target/release/deps")).unwrap();
    fs::create_dir_all(root.join("target/release/ro")).unwrap();
    let rel = root.join("target/release");
    for (i, (name, mode, len)) in [
        ("sysconfig", 0o755, 300_000),
        ("plugin-net", 0o755, 70_001),
        ("secret.key", 0o600, 33),
        ("empty", 0o644, 0),
        ("deps/libfoo.rlib", 0o644, 9000),
        ("ro/readme", 0o444, 10),
    ]
    .into_iter()
    .enumerate()
    {
        fs::write(rel.join(name), data(i as u64, len)).unwrap();
        fs::set_permissions(rel.join(name), fs::Permissions::from_mode(mode)).unwrap();
    }
    std::os::unix::fs::symlink("sysconfig", rel.join("current")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", rel.join("abs")).unwrap();
    std::os::unix::fs::symlink("../../nowhere", rel.join("dangling")).unwrap();
    fs::set_permissions(rel.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
}

/// Everything a user would compare: type, permission bits, size, mtime, bytes, link.
fn snapshot(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if m.file_type().is_symlink() {
                out.push(format!("{rel} -> {}", fs::read_link(&p).unwrap().display()));
            } else if m.is_dir() {
                out.push(format!("{rel}/ {:o}", m.mode() & 0o7777));
                stack.push(p);
            } else {
                let sum: u64 = fs::read(&p).unwrap().iter().map(|&b| b as u64).sum();
                out.push(format!(
                    "{rel} {:o} {} {}.{} {sum}",
                    m.mode() & 0o7777,
                    m.len(),
                    m.mtime(),
                    m.mtime_nsec()
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn sync_mirrors_files_modes_and_symlinks_then_copies_only_what_changed() {
    let exp = export();
    plugin_tree(exp.path());
    let dest = tempfile::tempdir().unwrap();
    let out = dest.path().join("release");
    let Some(d) = Diod::start(exp.path()) else {
        return;
    };
    let (mut c, root) = d.connect(65536);
    let opts = Options::new("target/release", &out);

    let first = sync(&mut c, root, &opts).unwrap();
    assert_eq!(snapshot(&out), snapshot(&exp.path().join("target/release")));
    assert_eq!(first.copied.len(), 6);
    assert_eq!(first.links.len(), 3);

    let again = sync(&mut c, root, &opts).unwrap();
    assert!(
        again.copied.is_empty() && again.links.is_empty() && again.deleted.is_empty(),
        "{again:?}"
    );
    assert_eq!(again.unchanged, 9);

    // Same size, new bytes and mtime: only this file travels.
    let plugin = exp.path().join("target/release/plugin-net");
    fs::write(&plugin, data(99, 70_001)).unwrap();
    let third = sync(&mut c, root, &opts).unwrap();
    assert_eq!(third.copied, vec![Path::new("plugin-net").to_owned()]);
    assert_eq!(third.unchanged, 8);
    assert_eq!(fs::read(out.join("plugin-net")).unwrap(), data(99, 70_001));

    // A mode change alone is noticed too.
    fs::set_permissions(
        exp.path().join("target/release/empty"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let fourth = sync(&mut c, root, &opts).unwrap();
    assert_eq!(fourth.copied, vec![Path::new("empty").to_owned()]);
    assert_eq!(snapshot(&out), snapshot(&exp.path().join("target/release")));
}

#[test]
fn files_and_directories_removed_remotely_are_deleted_locally() {
    let exp = export();
    plugin_tree(exp.path());
    let dest = tempfile::tempdir().unwrap();
    let Some(d) = Diod::start(exp.path()) else {
        return;
    };
    let (mut c, root) = d.connect(65536);
    let opts = Options::new("target/release", dest.path());
    sync(&mut c, root, &opts).unwrap();
    assert!(dest.path().join("deps/libfoo.rlib").exists());

    let rel = exp.path().join("target/release");
    fs::remove_file(rel.join("secret.key")).unwrap();
    fs::remove_dir_all(rel.join("deps")).unwrap();
    fs::remove_file(rel.join("dangling")).unwrap();
    let r = sync(&mut c, root, &opts).unwrap();
    let deleted: BTreeSet<_> = r.deleted.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(
        deleted,
        ["dangling", "deps", "secret.key"].map(String::from).into()
    );
    assert!(!dest.path().join("secret.key").exists());
    assert!(!dest.path().join("deps").exists());
    assert_eq!(snapshot(dest.path()), snapshot(&rel));
}

#[test]
fn a_running_executable_is_replaced_by_rename_not_rewritten() {
    let exp = export();
    plugin_tree(exp.path());
    let dest = tempfile::tempdir().unwrap();
    let Some(d) = Diod::start(exp.path()) else {
        return;
    };
    let (mut c, root) = d.connect(65536);
    let opts = Options::new("target/release", dest.path());
    sync(&mut c, root, &opts).unwrap();

    // An open descriptor stands in for a running process's text mapping.
    let held = fs::File::open(dest.path().join("sysconfig")).unwrap();
    let old_ino = held.metadata().unwrap().ino();
    fs::write(
        exp.path().join("target/release/sysconfig"),
        data(7, 123_456),
    )
    .unwrap();
    sync(&mut c, root, &opts).unwrap();

    let new = fs::metadata(dest.path().join("sysconfig")).unwrap();
    assert_ne!(
        new.ino(),
        old_ino,
        "file must be replaced, not rewritten in place"
    );
    assert_eq!(
        held.metadata().unwrap().len(),
        300_000,
        "old image left intact"
    );
    assert_eq!(
        fs::read(dest.path().join("sysconfig")).unwrap(),
        data(7, 123_456)
    );
    let leftovers: Vec<_> = fs::read_dir(dest.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".p9sync"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn msize_8192_is_negotiated_and_no_message_exceeds_it() {
    let exp = export();
    plugin_tree(exp.path());
    for i in 0..600 {
        fs::write(
            exp.path().join(format!("target/release/deps/f{i:04}.d")),
            data(i, 10),
        )
        .unwrap();
    }
    let dest = tempfile::tempdir().unwrap();
    let Some(d) = Diod::start(exp.path()) else {
        return;
    };
    let (mut c, root) = d.connect(8192);
    assert_eq!(c.msize(), 8192);
    sync(&mut c, root, &Options::new("target/release", dest.path())).unwrap();
    assert_eq!(
        snapshot(dest.path()),
        snapshot(&exp.path().join("target/release"))
    );
    let s = c.stats();
    assert!(
        s.largest_sent <= 8192 && s.largest_received <= 8192,
        "{s:?}"
    );
    // Reads and readdirs should actually use the room they have.
    assert!(s.largest_received > 8000, "{s:?}");
}

/// A datagram socketpair keeps message boundaries the way vio9p does (one write is
/// one request, one read is one whole reply), so a relay to diod exercises the
/// device transport end to end.
#[test]
fn device_transport_syncs_through_a_message_channel_at_8192_bytes() {
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixDatagram;

    let exp = export();
    plugin_tree(exp.path());
    let dest = tempfile::tempdir().unwrap();
    let Some(d) = Diod::start(exp.path()) else {
        return;
    };
    let (dev, relay) = UnixDatagram::pair().unwrap();
    let mut tcp = std::net::TcpStream::connect(d.addr()).unwrap();
    let biggest = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = biggest.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 17];
        while let Ok(n) = relay.recv(&mut buf) {
            seen.fetch_max(n, std::sync::atomic::Ordering::Relaxed);
            if n == 0 || tcp.write_all(&buf[..n]).is_err() {
                break;
            }
            let mut size = [0u8; 4];
            if tcp.read_exact(&mut size).is_err() {
                break;
            }
            let len = u32::from_le_bytes(size) as usize;
            buf[..4].copy_from_slice(&size);
            if tcp.read_exact(&mut buf[4..len]).is_err() {
                break;
            }
            seen.fetch_max(len, std::sync::atomic::Ordering::Relaxed);
            if relay.send(&buf[..len]).is_err() {
                break;
            }
        }
    });
    dev.set_nonblocking(true).unwrap();
    let file = fs::File::from(OwnedFd::from(dev));
    let t = p9sync::DeviceTransport::from_file(file, common::TIMEOUT);
    let mut c = p9sync::Client::connect(t, 1 << 20).unwrap();
    assert_eq!(c.msize(), 8192, "the device limit caps what is proposed");
    let root = c
        .attach(
            &common::whoami(),
            exp.path().to_str().unwrap(),
            rustix::process::getuid().as_raw(),
        )
        .unwrap();
    sync(&mut c, root, &Options::new("target/release", dest.path())).unwrap();
    assert_eq!(
        snapshot(dest.path()),
        snapshot(&exp.path().join("target/release"))
    );
    let most = biggest.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        most <= 8192 && most > 8000,
        "largest frame on the channel: {most}"
    );
}
