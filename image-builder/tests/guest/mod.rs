//! The VM tier's shared fixture: the small Linux test guest that `scripts/vm-guest setup`
//! prepares, the tools a test needs, and the rule for a missing one: the test says it is
//! skipped, unless `IB_REQUIRE_GUESTS` is set (`scripts/test` sets it once the guests are
//! set up, so CI never passes by skipping): then it fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The test guest: an uncompressed kernel and a busybox initramfs with a root shell on
/// the serial console.
pub struct Guest {
    pub vmlinux: PathBuf,
    pub initrd: PathBuf,
}

/// Says `test` is skipped for `why`, or fails it when `IB_REQUIRE_GUESTS` is set.
pub fn skip<T>(test: &str, why: impl std::fmt::Display) -> Option<T> {
    assert!(
        std::env::var_os("IB_REQUIRE_GUESTS").is_none(),
        "{test}: IB_REQUIRE_GUESTS is set but {why}"
    );
    eprintln!("{test}: skipped: {why}");
    None
}

/// Where `name` is on `PATH` (or in `/usr/sbin`, which a non-root `PATH` may lack).
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|f| f.is_file())
}

/// The first of `tools` that is missing, as the reason to skip.
pub fn need_tools(test: &str, tools: &[&str]) -> Option<()> {
    match tools.iter().find(|t| on_path(t).is_none()) {
        Some(t) => skip(test, format!("{t} is not installed")),
        None => Some(()),
    }
}

/// The directory `scripts/vm-guest` fills: `IB_VM_GUEST`, else the user's cache.
pub fn guest_dir() -> Option<PathBuf> {
    std::env::var_os("IB_VM_GUEST")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/image-builder/vm-guest"))
        })
}

/// The test guest with QEMU and `tools`, or `None` once the test has said why it is
/// skipped.
pub fn guest(test: &str, tools: &[&str]) -> Option<Guest> {
    need_tools(test, &[&["qemu-system-x86_64"], tools].concat())?;
    let Some(dir) = guest_dir() else {
        return skip(test, "there is no HOME and no IB_VM_GUEST");
    };
    let g = Guest {
        vmlinux: dir.join("vmlinux"),
        initrd: dir.join("initrd.img"),
    };
    if !(g.vmlinux.is_file() && g.initrd.is_file()) {
        return skip(
            test,
            format!(
                "no test guest in {} (run scripts/vm-guest setup)",
                dir.display()
            ),
        );
    }
    Some(g)
}

/// The checkout this crate is in.
pub fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}
