//! A lying server must not make the client write outside the destination, hang,
//! panic or allocate without bound.

use crate::fake;

use std::fs;
use std::path::Path;
use std::time::Duration;

use fake::{dir, file, spawn, Node, Quirks};
use p9sync::{sync, Client, ClientError, Options, StreamTransport, SyncError, TransportError};

fn client(tree: Node, q: Quirks) -> Result<Client<StreamTransport>, ClientError> {
    let t = StreamTransport::from_unix(spawn(tree, q), Duration::from_millis(500));
    Client::connect(t, 65536)
}

/// Every escape the tree attempts aims at a canary inside the test's own temporary
/// directory (`<top>/canary`, `<top>/x`), never at a real system path, so a
/// regression damages nothing but the test.
fn hostile_tree(top: &Path) -> Node {
    let canary = top.join("canary");
    fs::create_dir_all(&canary).unwrap();
    fs::write(canary.join("keep"), b"canary").unwrap();
    let abs = canary.as_os_str().as_encoded_bytes().to_vec();
    Node::Dir(vec![
        (b"..".to_vec(), dir(vec![(b"escaped", file(b"pwned"))])),
        (b".".to_vec(), dir(vec![(b"dot", file(b"pwned"))])),
        (abs, file(b"pwned")),
        (b"../../x".to_vec(), file(b"pwned")),
        (b"x\0y".to_vec(), file(b"pwned")),
        (b"".to_vec(), file(b"pwned")),
        (b"ok.txt".to_vec(), file(b"fine")),
        (
            b"sub".to_vec(),
            dir(vec![(b"..", file(b"pwned")), (b"inner", file(b"deep"))]),
        ),
        (b"lnk".to_vec(), Node::Link(b"../../outside".to_vec())),
        (b"nul-link".to_vec(), Node::Link(b"a\0b".to_vec())),
        (b"dup".to_vec(), file(b"first")),
        (b"dup".to_vec(), file(b"second")),
    ])
}

fn tree_of(root: &Path) -> Vec<String> {
    let mut out = vec![];
    for e in walk(root) {
        out.push(e.strip_prefix(root).unwrap().display().to_string());
    }
    out.sort();
    out
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut v = vec![];
    for e in fs::read_dir(p).unwrap() {
        let path = e.unwrap().path();
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            v.extend(walk(&path));
        }
        v.push(path);
    }
    v
}

#[test]
fn hostile_names_never_leave_the_destination() {
    let top = tempfile::tempdir().unwrap();
    let dest = top.path().join("deep/dest");
    let mut c = client(hostile_tree(top.path()), Quirks::default()).unwrap();
    let root = c.attach("root", "", 0).unwrap();
    let r = sync(&mut c, root, &Options::new("", &dest)).unwrap();

    assert_eq!(
        tree_of(top.path()),
        [
            "canary",
            "canary/keep",
            "deep",
            "deep/dest",
            "deep/dest/dup",
            "deep/dest/lnk",
            "deep/dest/ok.txt",
            "deep/dest/sub",
            "deep/dest/sub/inner"
        ]
    );
    assert_eq!(fs::read(top.path().join("canary/keep")).unwrap(), b"canary");
    assert_eq!(fs::read(dest.join("dup")).unwrap(), b"first");
    assert_eq!(
        fs::read_link(dest.join("lnk")).unwrap(),
        Path::new("../../outside")
    );
    let mut rejected = r.rejected.clone();
    rejected.sort();
    let abs = top
        .path()
        .join("canary")
        .as_os_str()
        .as_encoded_bytes()
        .to_vec();
    let mut want: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        abs,
        b"../../x".to_vec(),
        b"x\0y".to_vec(),
        b"a\0b".to_vec(),
    ];
    want.sort();
    assert_eq!(rejected, want);
}

#[test]
fn a_symlink_planted_in_the_destination_is_replaced_not_followed() {
    let top = tempfile::tempdir().unwrap();
    let outside = top.path().join("outside");
    let dest = top.path().join("dest");
    fs::create_dir_all(&outside).unwrap();
    fs::create_dir_all(&dest).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("sub")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), dest.join("ok.txt")).unwrap();
    let mut c = client(hostile_tree(top.path()), Quirks::default()).unwrap();
    let root = c.attach("root", "", 0).unwrap();
    sync(&mut c, root, &Options::new("", &dest)).unwrap();
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written through the planted links"
    );
    assert!(fs::symlink_metadata(dest.join("sub")).unwrap().is_dir());
    assert_eq!(fs::read(dest.join("sub/inner")).unwrap(), b"deep");
    assert_eq!(fs::read(dest.join("ok.txt")).unwrap(), b"fine");
}

#[test]
fn remote_path_with_dotdot_is_refused() {
    let top = tempfile::tempdir().unwrap();
    let mut c = client(hostile_tree(top.path()), Quirks::default()).unwrap();
    let root = c.attach("root", "", 0).unwrap();
    let e = sync(
        &mut c,
        root,
        &Options::new("sub/../..", top.path().join("dest")),
    )
    .unwrap_err();
    assert!(matches!(e, SyncError::BadRemotePath(_)), "{e}");
}

#[test]
fn an_announced_four_gigabyte_frame_is_refused_before_reading_it() {
    let top = tempfile::tempdir().unwrap();
    let mut c = client(
        hostile_tree(top.path()),
        Quirks {
            giant_frame_on_getattr: true,
            ..Quirks::default()
        },
    )
    .unwrap();
    let root = c.attach("root", "", 0).unwrap();
    let e = c.getattr(root, p9sync::msg::GETATTR_BASIC).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Transport(TransportError::Oversize {
                size: 0xffff_fff0,
                max: 65536
            })
        ),
        "{e}"
    );
    assert!(matches!(c.clunk(root), Err(ClientError::Poisoned)));
}

#[test]
fn a_read_reply_larger_than_requested_is_a_protocol_error() {
    let top = tempfile::tempdir().unwrap();
    let mut c = client(
        hostile_tree(top.path()),
        Quirks {
            read_returns_extra: true,
            ..Quirks::default()
        },
    )
    .unwrap();
    let root = c.attach("root", "", 0).unwrap();
    let e = sync(&mut c, root, &Options::new("", top.path())).unwrap_err();
    assert!(
        matches!(e, SyncError::Client(ClientError::Protocol(_))),
        "{e}"
    );
    let leftovers = fs::read_dir(top.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect::<Vec<_>>();
    assert!(
        leftovers
            .iter()
            .all(|n| !n.to_string_lossy().starts_with(".p9sync")),
        "{leftovers:?}"
    );
}

#[test]
fn a_directory_whose_offsets_never_advance_does_not_loop_forever() {
    let top = tempfile::tempdir().unwrap();
    let mut c = client(
        hostile_tree(top.path()),
        Quirks {
            readdir_never_advances: true,
            ..Quirks::default()
        },
    )
    .unwrap();
    let root = c.attach("root", "", 0).unwrap();
    let e = c.list(root, 1000).unwrap_err();
    assert!(matches!(e, ClientError::Protocol(_)), "{e}");
}

#[test]
fn a_reply_with_the_wrong_tag_poisons_the_session() {
    let top = tempfile::tempdir().unwrap();
    let mut c = client(
        hostile_tree(top.path()),
        Quirks {
            wrong_tag_on_walk: true,
            ..Quirks::default()
        },
    )
    .unwrap();
    let root = c.attach("root", "", 0).unwrap();
    assert!(matches!(
        c.walk(root, &[b"ok.txt"]),
        Err(ClientError::Protocol(_))
    ));
    assert!(matches!(
        c.walk(root, &[b"ok.txt"]),
        Err(ClientError::Poisoned)
    ));
}

#[test]
fn a_silent_server_times_out() {
    let top = tempfile::tempdir().unwrap();
    let mut c = client(
        hostile_tree(top.path()),
        Quirks {
            silent_on_attach: true,
            ..Quirks::default()
        },
    )
    .unwrap();
    let e = c.attach("root", "", 0).unwrap_err();
    assert!(
        matches!(e, ClientError::Transport(TransportError::Timeout(_))),
        "{e}"
    );
}

#[test]
fn wrong_version_and_inflated_msize_are_refused() {
    let e = client(
        dir(vec![]),
        Quirks {
            version: Some(b"9P2000"),
            ..Quirks::default()
        },
    )
    .err()
    .unwrap();
    assert!(
        matches!(e, ClientError::Version(ref v) if v == "9P2000"),
        "{e}"
    );
    let e = client(
        dir(vec![]),
        Quirks {
            msize_reply: Some(1 << 20),
            ..Quirks::default()
        },
    )
    .err()
    .unwrap();
    assert!(matches!(e, ClientError::Protocol(_)), "{e}");
}

#[test]
fn clunking_a_fid_twice_is_refused_locally() {
    let top = tempfile::tempdir().unwrap();
    let mut c = client(hostile_tree(top.path()), Quirks::default()).unwrap();
    let root = c.attach("root", "", 0).unwrap();
    let f = c.walk(root, &[b"ok.txt"]).unwrap();
    c.clunk(f).unwrap();
    let sent = c.stats().requests;
    assert!(matches!(c.clunk(f), Err(ClientError::StaleFid(_))));
    assert_eq!(c.stats().requests, sent, "nothing sent for a stale fid");
    c.clunk(root).unwrap();
}

#[test]
fn trees_deeper_or_larger_than_the_limits_are_refused() {
    let top = tempfile::tempdir().unwrap();
    let mut deep = dir(vec![]);
    for _ in 0..10 {
        deep = dir(vec![(b"d", deep)]);
    }
    let mut c = client(deep, Quirks::default()).unwrap();
    let root = c.attach("root", "", 0).unwrap();
    let mut opts = Options::new("", top.path().join("deep"));
    opts.max_depth = 3;
    let e = sync(&mut c, root, &opts).unwrap_err();
    assert!(matches!(e, SyncError::TooDeep(3)), "{e}");

    let names: Vec<Vec<u8>> = (0..50).map(|i| format!("f{i}").into_bytes()).collect();
    let wide = Node::Dir(names.into_iter().map(|n| (n, file(b"x"))).collect());
    let mut c = client(wide, Quirks::default()).unwrap();
    let root = c.attach("root", "", 0).unwrap();
    let mut opts = Options::new("", top.path().join("wide"));
    opts.max_entries = 10;
    let e = sync(&mut c, root, &opts).unwrap_err();
    assert!(
        matches!(
            e,
            SyncError::Client(ClientError::Protocol(_)) | SyncError::TooManyEntries(10)
        ),
        "{e}"
    );
}
