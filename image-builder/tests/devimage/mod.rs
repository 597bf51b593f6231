//! What the dev cloud image's boot environment must hold, file by file: the stand-in
//! archive's tree as the template's steps leave it.

use super::*;

/// The boot environment mounted at `mnt`, against the stand-in archive and the template.
pub fn check_root(mnt: &Path, base: &Archive, binaries: &[(String, Vec<u8>)]) {
    let p = |image: &str| mnt.join(image.trim_start_matches('/'));
    let read = |image: &str| {
        std::fs::read(p(image)).unwrap_or_else(|e| panic!("{image} in the image: {e}"))
    };
    let is = |image: &str, bytes: &[u8], want: (u32, u32, u32)| {
        assert!(
            read(image) == bytes,
            "{image}: {:?}",
            String::from_utf8_lossy(&read(image))
        );
        assert_eq!(perms(&p(image)), want, "{image}: mode, uid, gid");
    };
    let dir = |image: &str, want: (u32, u32, u32)| {
        assert!(
            std::fs::symlink_metadata(p(image)).unwrap().is_dir(),
            "{image}"
        );
        assert_eq!(perms(&p(image)), want, "{image}: mode, uid, gid");
    };
    let link = |image: &str, target: &str| {
        assert_eq!(
            std::fs::read_link(p(image)).unwrap(),
            Path::new(target),
            "{image}"
        );
    };
    let empty_dir = |image: &str| {
        let left: Vec<_> = std::fs::read_dir(p(image))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{image} holds {left:?}");
    };
    const ROOT: u32 = 0;
    const BIN: u32 = 2;
    const SYS: u32 = 3;

    // The stand-in's Debian root came through whole: its own files, a hard link.
    assert_eq!(
        read("/etc/debian_version"),
        base.file("/etc/debian_version")
    );
    assert_eq!(
        read("/etc/image-builder-standin"),
        base.file("/etc/image-builder-standin")
    );
    let ino = |image: &str| std::fs::metadata(p(image)).unwrap().ino();
    assert_eq!(ino("/usr/bin/gunzip"), ino("/usr/bin/uncompress"));

    // sysconfig-release and sysconfig-dev: the daemon, its plugins and p9sync from -E, the
    // dev configuration (plugins from the repository share at /repo), the manifests and
    // method scripts; the dev sysconfig.xml replaced the release one.
    dir("/usr/lib/sysconfig", (0o755, ROOT, BIN));
    dir("/usr/lib/sysconfig/plugins", (0o755, ROOT, BIN));
    dir("/etc/sysconfig.d", (0o755, ROOT, SYS));
    dir("/var/lib/sysconfig", (0o700, ROOT, ROOT));
    for (file, bytes) in binaries {
        is(file, bytes, (0o555, ROOT, BIN));
    }
    is(
        "/etc/sysconfig.toml",
        &template_file("sysconfig/dev/sysconfig.toml"),
        (0o644, ROOT, SYS),
    );
    let toml = String::from_utf8(read("/etc/sysconfig.toml")).unwrap();
    let plugins = toml
        .lines()
        .skip_while(|l| l.trim() != "[plugins]")
        .find_map(|l| l.trim().strip_prefix("path = "))
        .unwrap();
    assert_eq!(plugins, "\"/repo/target/release\"");
    // In the image, from templates/files, with mode, owner and group.
    for (file, src, meta) in [
        (
            "/etc/sysconfig.d/desired.toml",
            "sysconfig/dev/desired.toml",
            (0o644, ROOT, SYS),
        ),
        (
            "/lib/svc/manifest/system/sysconfig.xml",
            "smf/sysconfig-dev.xml",
            (0o444, ROOT, SYS),
        ),
        (
            "/lib/svc/manifest/system/dev-9p-mount.xml",
            "smf/dev-9p-mount.xml",
            (0o444, ROOT, SYS),
        ),
        (
            "/lib/svc/method/sysconfig",
            "smf/method/sysconfig",
            (0o555, ROOT, BIN),
        ),
        (
            "/lib/svc/method/dev-9p-mount",
            "smf/method/dev-9p-mount",
            (0o555, ROOT, BIN),
        ),
    ] {
        is(file, &template_file(src), meta);
    }
    dir("/repo", (0o755, ROOT, ROOT));
    empty_dir("/repo");

    // /etc/vfstab: the image's own, then the 9P line for /repo, not mounted at boot.
    let mut vfstab = String::from_utf8_lossy(&base.file("/etc/vfstab"))
        .trim()
        .to_string();
    vfstab.push('\n');
    vfstab.push_str(String::from_utf8_lossy(&template_file("sysconfig/dev/vfstab.repo")).trim());
    vfstab.push('\n');
    is("/etc/vfstab", vfstab.as_bytes(), (0o644, ROOT, SYS));
    let text = String::from_utf8(read("/etc/vfstab")).unwrap();
    let repo: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.get(2) == Some(&"/repo"))
        .collect();
    assert_eq!(
        repo,
        [["/dev/9p/repo", "-", "/repo", "p9fs", "-", "no", "-"]]
    );
    // The fragments' directory is removed again.
    assert!(
        std::fs::symlink_metadata(p("/var/tmp/vfstab.parts")).is_err(),
        "/var/tmp/vfstab.parts is left"
    );

    // SMF is seeded at first boot: the image's seed repository is installed as is, and
    // manifest-import brings in the new manifests when the image boots.
    is(
        "/etc/svc/repository.db",
        &base.file("/lib/svc/seed/global.db"),
        (0o600, ROOT, ROOT),
    );

    // devfs, left to first boot: a reconfiguration boot, the host-specific directories
    // emptied (the stand-in's stale disk links are gone), the console link.
    is("/reconfigure", b"", (0o644, ROOT, ROOT));
    for (d, group) in [
        ("/dev/cfg", ROOT),
        ("/dev/dsk", SYS),
        ("/dev/rdsk", SYS),
        ("/dev/usb", ROOT),
    ] {
        dir(d, (0o755, ROOT, group));
        empty_dir(d);
    }
    link("/dev/msglog", "../devices/pseudo/sysmsg@0:msglog");

    // common: SMF profiles, DNS name service, host name and hosts, root's password.
    for (l, target) in [
        ("generic.xml", "generic_limited_net.xml"),
        ("inetd_services.xml", "inetd_generic.xml"),
        ("platform.xml", "platform_none.xml"),
        ("name_service.xml", "ns_dns.xml"),
    ] {
        let image = format!("/etc/svc/profile/{l}");
        link(&image, target);
        assert_eq!(perms(&p(&image)).1, ROOT);
        assert!(p(&image).is_file(), "{image} -> {target} dangles");
    }
    is(
        "/etc/nsswitch.conf",
        &base.file("/etc/nsswitch.dns"),
        (0o644, ROOT, SYS),
    );
    is("/etc/resolv.conf", b"", (0o644, ROOT, ROOT));
    is("/etc/nodename", b"unknown\n", (0o644, ROOT, ROOT));
    is(
        "/etc/inet/hosts",
        &template_file("hosts"),
        (0o644, ROOT, ROOT),
    );
    let shadow = String::from_utf8(read("/etc/shadow")).unwrap();
    let before = String::from_utf8_lossy(&base.file("/etc/shadow")).into_owned();
    let root_line = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("root:"))
            .unwrap()
            .to_string()
    };
    let want = root_line(&before).replacen(
        ":NP:",
        ":$5$ibdevroot$nnLdGRYxakXoU6r6t48CoVqSbTLd2oitCVxK52hkVn.:",
        1,
    );
    assert_eq!(root_line(&shadow), want);
    let others = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("root:"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(others(&shadow), others(&before));
    assert_eq!(perms(&p("/etc/shadow")), (0o400, ROOT, ROOT));

    // The ttya console at 115200 and UTC replace the stand-in's own files.
    assert_ne!(base.file("/etc/ttydefs"), template_file("ttydefs.115200"));
    assert_ne!(
        base.file("/etc/default/init"),
        template_file("default_init.utc")
    );
    is(
        "/boot/conf.d/console",
        &template_file("boot_console.ttya"),
        (0o644, ROOT, ROOT),
    );
    is(
        "/etc/ttydefs",
        &template_file("ttydefs.115200"),
        (0o644, ROOT, SYS),
    );
    is(
        "/etc/default/init",
        &template_file("default_init.utc"),
        (0o644, ROOT, SYS),
    );
}
