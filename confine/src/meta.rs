use std::ffi::OsString;

/// What kind of file a directory entry is, as `lstat` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
    Unknown,
}

/// The special files [`crate::Root::mknod`] creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    CharDevice,
    BlockDevice,
    Fifo,
}

/// A point in time as file systems store it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileTime {
    pub secs: i64,
    pub nanos: u32,
}

impl FileTime {
    pub fn from_secs(secs: i64) -> FileTime {
        FileTime { secs, nanos: 0 }
    }
}

/// The result of `lstat` on an image path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub kind: FileKind,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 07777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: FileTime,
    pub nlink: u64,
    pub dev: u64,
    pub ino: u64,
    /// Device number of a character or block device, split.
    pub rdev_major: u32,
    pub rdev_minor: u32,
}

impl Metadata {
    // Field widths of `struct stat` differ between Linux and illumos; widen them all here.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    pub(crate) fn from_stat(st: &rustix::fs::Stat) -> Metadata {
        use rustix::fs::FileType;
        let kind = match FileType::from_raw_mode(st.st_mode as rustix::fs::RawMode) {
            FileType::RegularFile => FileKind::File,
            FileType::Directory => FileKind::Dir,
            FileType::Symlink => FileKind::Symlink,
            FileType::CharacterDevice => FileKind::CharDevice,
            FileType::BlockDevice => FileKind::BlockDevice,
            FileType::Fifo => FileKind::Fifo,
            FileType::Socket => FileKind::Socket,
            _ => FileKind::Unknown,
        };
        let rdev = st.st_rdev as rustix::fs::Dev;
        Metadata {
            kind,
            mode: (st.st_mode as u32) & 0o7777,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            size: st.st_size.max(0) as u64,
            mtime: FileTime {
                secs: st.st_mtime as i64,
                nanos: st.st_mtime_nsec as u32,
            },
            nlink: st.st_nlink as u64,
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            rdev_major: rustix::fs::major(rdev),
            rdev_minor: rustix::fs::minor(rdev),
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Dir
    }

    pub fn is_symlink(&self) -> bool {
        self.kind == FileKind::Symlink
    }

    pub fn is_file(&self) -> bool {
        self.kind == FileKind::File
    }
}

/// One entry of [`crate::Root::read_dir`], with its `lstat` metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: OsString,
    pub metadata: Metadata,
}
