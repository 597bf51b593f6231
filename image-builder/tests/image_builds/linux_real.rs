//! Linux image builds made for real (mkfs.vfat and mtools, xorriso) with ZFS from the
//! recorder, read back with independent tools (mdir, mtype, isoinfo, xorriso).

use super::*;

/// ZFS from the recorder, every other command for real.
struct Split {
    rec: Arc<Recorder>,
    real: SystemRunner,
}

impl Runner for Split {
    fn output(&self, cmd: &Cmd) -> Result<Output, RunError> {
        let p = cmd.program().to_string_lossy();
        if p.ends_with("/zfs") || p.ends_with("/zpool") {
            self.rec.output(cmd)
        } else {
            self.real.output(cmd)
        }
    }
}

fn have(tools: &[&str], test: &str) -> bool {
    let missing: Vec<&&str> = tools.iter().filter(|t| !Path::new(t).exists()).collect();
    if !missing.is_empty() {
        eprintln!("{test}: skipped: missing {missing:?}");
    }
    missing.is_empty()
}

#[test]
fn linux_pcfs_is_a_real_fat_image() {
    if !have(
        &[
            "/usr/sbin/mkfs.vfat",
            "/usr/bin/mcopy",
            "/usr/bin/mdir",
            "/usr/bin/mtype",
        ],
        "linux_pcfs_is_a_real_fat_image",
    ) {
        return;
    }
    let w = World::new(Host::Linux);
    w.template(
        r#"{ "pcfs": { "label": "OIESP", "size": 40 },
             "steps": [
               { "t": "ensure_dir", "dir": "/EFI", "owner": "root", "group": "root", "mode": "755" },
               { "t": "ensure_dir", "dir": "/EFI/BOOT", "owner": "root", "group": "root", "mode": "755" },
               { "t": "ensure_file", "file": "/EFI/BOOT/BOOTX64.EFI", "contents": "loader bytes\n", "owner": "root", "group": "root", "mode": "644" } ] }"#,
    );
    let split = Split {
        rec: w.rec.clone(),
        real: SystemRunner::new(),
    };
    w.build(Host::Linux, &split, vec![]).unwrap();
    let img = w.dir("output/g-img.pcfs");
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 40 << 20);
    let mdir = std::process::Command::new("/usr/bin/mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i"])
        .arg(&img)
        .arg("::/")
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&mdir.stdout);
    assert!(listing.contains("Volume in drive : is OIESP"), "{listing}");
    assert!(listing.contains("EFI"), "{listing}");
    let mtype = std::process::Command::new("/usr/bin/mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&img)
        .arg("::/EFI/BOOT/BOOTX64.EFI")
        .output()
        .unwrap();
    assert_eq!(mtype.stdout, b"loader bytes\n");
}

#[test]
fn linux_iso_is_a_real_bootable_iso() {
    if !have(
        &["/usr/bin/xorriso", "/usr/bin/isoinfo"],
        "linux_iso_is_a_real_bootable_iso",
    ) {
        return;
    }
    let w = World::new(Host::Linux);
    w.template(
        r#"{ "iso": { "boot_bios": "boot/cdboot", "boot_uefi": "boot/efi.img", "volume_id": "OI-TEST",
                     "hybrid": { "stage1": "boot/pmbr", "stage2": "boot/isoboot" } },
             "steps": [
               { "t": "ensure_dir", "dir": "/boot", "owner": "root", "group": "root", "mode": "755" },
               { "t": "ensure_file", "file": "/boot/cdboot", "contents": "a BIOS El Torito boot file, long enough for the boot information table to be patched in", "owner": "root", "group": "root", "mode": "644" },
               { "t": "ensure_file", "file": "/boot/efi.img", "contents": "esp image", "owner": "root", "group": "root", "mode": "644" },
               { "t": "ensure_file", "file": "/etc.conf.d.x", "contents": "multi dot\n", "owner": "root", "group": "root", "mode": "600" } ] }"#,
    );
    let split = Split {
        rec: w.rec.clone(),
        real: SystemRunner::new(),
    };
    w.build(Host::Linux, &split, vec![]).unwrap();
    let iso = w.dir("output/g-img.iso");
    let pvd = std::process::Command::new("/usr/bin/isoinfo")
        .args(["-d", "-i"])
        .arg(&iso)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&pvd.stdout);
    assert!(text.contains("Volume id: OI-TEST"), "{text}");
    assert!(text.contains("Rock Ridge signatures version"), "{text}");
    let et = std::process::Command::new("/usr/bin/xorriso")
        .args(["-indev"])
        .arg(&iso)
        .args(["-report_el_torito", "plain"])
        .output()
        .unwrap();
    let et = String::from_utf8_lossy(&et.stdout);
    assert!(
        et.contains("/boot/cdboot") && et.contains("/boot/efi.img"),
        "{et}"
    );
    assert!(
        et.lines().any(|l| l.contains("BIOS") && l.contains("none")),
        "{et}"
    );
    assert!(et.lines().any(|l| l.contains("UEFI")), "{et}");
    let files = std::process::Command::new("/usr/bin/isoinfo")
        .args(["-R", "-x", "/etc.conf.d.x", "-i"])
        .arg(&iso)
        .output()
        .unwrap();
    assert_eq!(files.stdout, b"multi dot\n");
}

#[test]
fn a_pcfs_image_with_the_same_inputs_is_fetched_from_the_store_not_built() {
    if !have(
        &["/usr/sbin/mkfs.vfat", "/usr/bin/mcopy"],
        "a_pcfs_image_with_the_same_inputs_is_fetched_from_the_store_not_built",
    ) {
        return;
    }
    let w = World::new(Host::Linux);
    let template = |text: &str| {
        w.template(&format!(
            r#"{{ "pcfs": {{ "label": "OIESP", "size": 40 }},
                 "steps": [
                   {{ "t": "ensure_file", "file": "/LOADER", "contents": "{text}", "owner": "root", "group": "root", "mode": "644" }} ] }}"#
        ))
    };
    let split = Split {
        rec: w.rec.clone(),
        real: SystemRunner::new(),
    };
    let url = format!("file://{}", w.dir("store").display());
    let with_store = |o: BuildOptions| BuildOptions {
        store: Some(image_builder::build::stage_store::StoreOptions {
            url: image_builder::store::StoreUrl::parse(&url).unwrap(),
            required: true,
        }),
        ..o
    };
    let img = w.dir("output/g-img.pcfs");
    let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();

    template("one");
    let built = w
        .build_with(Host::Linux, &split, vec![], with_store)
        .unwrap();
    assert_eq!(built, Outcome::Built);
    let (bytes, when) = (std::fs::read(&img).unwrap(), mtime(&img));
    // Another machine with the same templates: no image yet. It is fetched, whole, with
    // the time it was made.
    std::fs::remove_file(&img).unwrap();
    let again = w
        .build_with(Host::Linux, &split, vec![], with_store)
        .unwrap();
    assert_eq!(again, Outcome::Cached);
    assert_eq!(std::fs::read(&img).unwrap(), bytes);
    assert_eq!(mtime(&img), when);
    let sums = std::fs::read_to_string(w.dir("output/SHA256SUMS")).unwrap();
    assert!(sums.contains("  g-img.pcfs"), "{sums}");
    // A changed step is another key: built.
    template("two");
    let changed = w
        .build_with(Host::Linux, &split, vec![], with_store)
        .unwrap();
    assert_eq!(changed, Outcome::Built);
    assert_ne!(std::fs::read(&img).unwrap(), bytes);
}
