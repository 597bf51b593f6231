//! A test image tree with every kind of entry, a way to compare trees, and real tools.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::{lchown, symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub mod illumos_tar;
pub mod registry;

use runner::{Cmd, Runner, SystemRunner};
use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, CWD};

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

pub fn tool(path: &str) -> Option<PathBuf> {
    let p = PathBuf::from(path);
    if p.exists() {
        Some(p)
    } else {
        println!("skipped: {path} is not installed");
        None
    }
}

pub fn run(program: &Path, args: &[&str]) -> String {
    let out = SystemRunner::new()
        .run(&Cmd::new(program).args(args))
        .unwrap_or_else(|e| panic!("{e}"));
    out.stdout_str()
}

/// One node of the tree: what is written, with whom as owner, and when.
pub enum Spec {
    Dir(u32),
    File(u32, Vec<u8>),
    Symlink(&'static str),
    HardLink(&'static str),
    Fifo(u32),
    Char(u32, u32, u32),
    Block(u32, u32, u32),
}

pub struct Node {
    pub path: String,
    pub spec: Spec,
    pub owner: (u32, u32),
    pub mtime: i64,
}

fn n(path: impl Into<String>, spec: Spec, owner: (u32, u32), mtime: i64) -> Node {
    Node {
        path: path.into(),
        spec,
        owner,
        mtime,
    }
}

/// Content that compresses but varies, big enough to span several compression blocks.
pub fn bulk(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    while out.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let word = (x >> 33) % 512;
        out.extend_from_slice(format!("sym{word:03} ").as_bytes());
        if matches!(x % 13, 0) {
            out.push(b'\n');
        }
    }
    out.truncate(len);
    out
}

pub const LONG_DIR: &str =
    "usr/share/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// The image tree: directories with special modes, setuid and setgid files, foreign owners,
/// hard links, symlinks (relative, absolute, dangling, long), a FIFO, device nodes (root
/// only), names over 100 bytes, and one mtime after the reproducibility epoch.
pub fn spec() -> Vec<Node> {
    let root = is_root();
    let mut v = vec![
        n("etc", Spec::Dir(0o755), (0, 3), 1_000_000),
        n("etc/passwd", Spec::File(0o644, b"root:x:0:0::/root:/bin/sh\n".to_vec()), (0, 3), 1_000_001),
        n("etc/shadow", Spec::File(0o400, b"root:*:19000::::::\n".to_vec()), (0, 3), 1_000_002),
        n("etc/empty", Spec::File(0o644, Vec::new()), (0, 0), 1_000_003),
        n("etc/localtime", Spec::Symlink("/usr/share/zoneinfo/UTC"), (0, 0), 1_000_004),
        n("tmp", Spec::Dir(0o1777), (0, 0), 1_000_005),
        n("usr", Spec::Dir(0o755), (0, 2), 1_000_006),
        n("usr/bin", Spec::Dir(0o755), (0, 2), 1_000_007),
        n("usr/bin/su", Spec::File(0o4755, b"\x7fELF su".to_vec()), (0, 2), 1_000_008),
        n("usr/bin/wall", Spec::File(0o2755, b"\x7fELF wall".to_vec()), (0, 7), 1_000_009),
        n("usr/bin/ls", Spec::File(0o555, bulk(3 << 19, 1)), (2, 2), 1_000_010),
        n("usr/bin/dir", Spec::HardLink("usr/bin/ls"), (2, 2), 1_000_010),
        n("usr/bin/vdir", Spec::HardLink("usr/bin/ls"), (2, 2), 1_000_010),
        n("usr/lib", Spec::Dir(0o755), (0, 2), 1_000_011),
        n("usr/lib/libc.so.1", Spec::File(0o755, bulk(200_000, 2)), (0, 2), 1_000_012),
        n("usr/lib64", Spec::Symlink("lib"), (0, 0), 1_000_013),
        n("usr/share", Spec::Dir(0o755), (0, 2), 1_000_014),
        n(LONG_DIR, Spec::Dir(0o750), (0, 0), 1_000_015),
        n(
            format!("{LONG_DIR}/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.txt"),
            Spec::File(0o644, b"long name\n".to_vec()),
            (0, 0),
            1_000_016,
        ),
        n(
            "usr/share/longlink",
            Spec::Symlink(
                "../share/cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc/target",
            ),
            (0, 0),
            1_000_017,
        ),
        n("bin", Spec::Symlink("usr/bin"), (0, 0), 1_000_018),
        n("var", Spec::Dir(0o755), (0, 3), 1_000_019),
        n("var/run", Spec::Dir(0o755), (0, 3), 1_000_020),
        n("var/run/fifo", Spec::Fifo(0o620), (1234, 5678), 1_000_021),
        n("home", Spec::Dir(0o755), (0, 0), 1_000_022),
        n("home/user", Spec::Dir(0o700), (1234, 5678), 1_000_023),
        n("home/user/notes", Spec::File(0o640, b"notes\n".to_vec()), (1234, 5678), 1_000_024),
        n("home/user/new", Spec::File(0o600, b"after the epoch\n".to_vec()), (1234, 5678), 2_000_000_000),
    ];
    if root {
        v.push(n("dev", Spec::Dir(0o755), (0, 3), 1_000_025));
        v.push(n("dev/null", Spec::Char(0o666, 1, 3), (0, 3), 1_000_026));
        v.push(n("dev/loop0", Spec::Block(0o660, 7, 0), (0, 6), 1_000_027));
    } else {
        println!("skipped: device nodes and foreign owners need root");
    }
    v
}

fn set_mtime(p: &Path, secs: i64) {
    let t = Timestamps {
        last_access: Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        last_modification: Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(CWD, p, &t, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

/// Writes the tree under `dir`, in reverse order when `reverse` (so inode numbers and
/// directory order differ between two copies).
pub fn make_tree(dir: &Path, reverse: bool) {
    let mut nodes = spec();
    if reverse {
        nodes.reverse();
    }
    // Hard links need their target first whatever the order.
    nodes.sort_by_key(|n| matches!(n.spec, Spec::HardLink(_)));
    for node in &nodes {
        let p = dir.join(&node.path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        match &node.spec {
            Spec::Dir(_) => fs::create_dir_all(&p).unwrap(),
            Spec::File(_, data) => fs::write(&p, data).unwrap(),
            Spec::Symlink(t) => symlink(t, &p).unwrap(),
            Spec::HardLink(t) => fs::hard_link(dir.join(t), &p).unwrap(),
            Spec::Fifo(_) => {
                rustix::fs::mknodat(CWD, &p, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap()
            }
            Spec::Char(_, ma, mi) => rustix::fs::mknodat(
                CWD,
                &p,
                FileType::CharacterDevice,
                Mode::from_raw_mode(0o600),
                rustix::fs::makedev(*ma, *mi),
            )
            .unwrap(),
            Spec::Block(_, ma, mi) => rustix::fs::mknodat(
                CWD,
                &p,
                FileType::BlockDevice,
                Mode::from_raw_mode(0o600),
                rustix::fs::makedev(*ma, *mi),
            )
            .unwrap(),
        }
    }
    // Owners, then modes (chown clears setuid), then times, deepest paths last-touched.
    let mut by_depth: Vec<&Node> = nodes.iter().collect();
    by_depth.sort_by_key(|n| std::cmp::Reverse(n.path.matches('/').count()));
    for node in by_depth {
        let p = dir.join(&node.path);
        if is_root() {
            lchown(&p, Some(node.owner.0), Some(node.owner.1)).unwrap();
        }
        let mode = match node.spec {
            Spec::Dir(m)
            | Spec::File(m, _)
            | Spec::Fifo(m)
            | Spec::Char(m, _, _)
            | Spec::Block(m, _, _) => Some(m),
            _ => None,
        };
        if let Some(m) = mode {
            fs::set_permissions(&p, fs::Permissions::from_mode(m)).unwrap();
        }
        set_mtime(&p, node.mtime);
    }
    set_mtime(dir, 999_999);
}

/// Everything tar should carry for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub content: Vec<u8>,
    pub rdev: u64,
    /// For files with several names: the first of them, so link groups compare by name.
    pub link_group: Option<String>,
}

pub fn snapshot(dir: &Path) -> BTreeMap<String, Seen> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<u64, String> = HashMap::new();
    let mut paths = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for ent in fs::read_dir(&d).unwrap() {
            let p = ent.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            paths.push(p);
        }
    }
    paths.sort();
    for p in paths {
        let m = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        let ft = m.file_type();
        use std::os::unix::fs::FileTypeExt;
        let (kind, content) = if ft.is_dir() {
            ("dir", Vec::new())
        } else if ft.is_symlink() {
            (
                "symlink",
                fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
            )
        } else if ft.is_file() {
            ("file", fs::read(&p).unwrap())
        } else if ft.is_fifo() {
            ("fifo", Vec::new())
        } else if ft.is_char_device() {
            ("char", Vec::new())
        } else if ft.is_block_device() {
            ("block", Vec::new())
        } else {
            ("other", Vec::new())
        };
        let link_group = (ft.is_file() && m.nlink() > 1)
            .then(|| inodes.entry(m.ino()).or_insert(rel.clone()).clone());
        out.insert(
            rel,
            Seen {
                kind,
                // Linux reports symlinks as 0777 whatever was archived.
                mode: if ft.is_symlink() {
                    0
                } else {
                    m.mode() & 0o7777
                },
                uid: m.uid(),
                gid: m.gid(),
                mtime: m.mtime(),
                content,
                rdev: m.rdev(),
                link_group,
            },
        );
    }
    out
}

/// Asserts two trees are the same, naming the first difference.
pub fn assert_same(want: &BTreeMap<String, Seen>, got: &BTreeMap<String, Seen>) {
    let wk: Vec<_> = want.keys().collect();
    let gk: Vec<_> = got.keys().collect();
    assert_eq!(wk, gk, "different paths");
    for (k, w) in want {
        let g = &got[k];
        if w != g {
            let short = |s: &Seen| Seen {
                content: s.content.iter().take(40).copied().collect(),
                ..s.clone()
            };
            panic!("{k} differs:\n want {:?}\n  got {:?}", short(w), short(g));
        }
    }
}
