//! ZFS tier: `build --until`, `build --from` and `shell` against a real OpenZFS (run by
//! `scripts/zfs-tier` inside the zfs-vm guest with `IB_ZFS_TIER=1`; elsewhere these tests
//! say they are skipped).

use crate::tier;

use std::path::{Path, PathBuf};
use std::process::Command;

use image_builder::build::{self, BuildOptions, CacheStatus, Outcome};
use image_builder::template::Features;
use tier::{tier, ScratchPool};
use zfs::Zfs;

/// The files `/usr/bin/cat` needs to run chrooted in a tree: itself, its libraries and
/// its loader, at the paths `ldd` names.
fn cat_and_its_libraries() -> Vec<PathBuf> {
    let out = Command::new("ldd").arg("/usr/bin/cat").output().unwrap();
    assert!(out.status.success(), "ldd /usr/bin/cat failed");
    let mut files: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.split_once("=>").map_or(l, |(_, r)| r).trim();
            l.split_whitespace()
                .next()
                .filter(|p| p.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect();
    files.push(PathBuf::from("/bin/cat"));
    files
}

/// A first stage whose steps put `cat` into the tree (steps `0..first`), then write
/// `/m/marker` four times, step `i` writing `step i`. Returns `first`.
fn template(pool: &ScratchPool) -> usize {
    let files = cat_and_its_libraries();
    let mut dirs: Vec<PathBuf> = vec![PathBuf::from("/m")];
    for f in &files {
        for a in f.ancestors().skip(1) {
            if a != Path::new("/") && !dirs.iter().any(|d| d == a) {
                dirs.push(a.to_path_buf());
            }
        }
    }
    dirs.sort();
    let mut steps: Vec<String> = dirs
        .iter()
        .map(|d| {
            format!(
                r#"{{ "t": "ensure_dir", "dir": "{}", "owner": "root", "group": "root", "mode": "755" }}"#,
                d.display()
            )
        })
        .collect();
    std::fs::create_dir_all(pool.templates().join("files")).unwrap();
    for (i, f) in files.iter().enumerate() {
        let src = format!("bin{i}");
        std::fs::copy(f, pool.templates().join("files").join(&src)).unwrap();
        steps.push(format!(
            r#"{{ "t": "ensure_file", "file": "{}", "src": "{src}", "owner": "root", "group": "root", "mode": "755" }}"#,
            f.display()
        ));
    }
    let first = steps.len();
    for i in first..first + 4 {
        steps.push(format!(
            r#"{{ "t": "ensure_file", "file": "/m/marker", "contents": "step {i}\n", "owner": "root", "group": "root", "mode": "644" }}"#
        ));
    }
    pool.write_templates(&[(
        "g/sel.json",
        &format!(
            r#"{{ "dataset": {{ "name": "w", "output_snapshot": "done" }}, "steps": [ {} ] }}"#,
            steps.join(",\n")
        ),
    )]);
    first
}

/// The step indices the last build of `g/sel` ran, and its record's `cache`.
fn ran(pool: &ScratchPool) -> (Vec<usize>, String) {
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pool.output_dir().join("g-sel.build.json")).unwrap())
            .unwrap();
    let steps = rec["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["index"].as_u64().unwrap() as usize)
        .collect();
    (steps, rec["cache"].as_str().unwrap_or("").to_string())
}

/// `image-builder shell` on `pool`'s stage with `args`, as on a host with `/dev/zfs`:
/// its exit status, standard output and error.
fn shell(pool: &ScratchPool, args: &[&str]) -> (Option<i32>, String, String) {
    let t = pool.templates().display().to_string();
    let ds = pool.dataset();
    let out = Command::new(env!("CARGO_BIN_EXE_image-builder"))
        .args(["shell", "-d", &ds, "-T", &t, "-g", "g", "-n", "sel"])
        .args(args)
        // The guest's marker would make it use the embedded pool instead of this one.
        .env_remove("ZFS_VM_GUEST")
        .env_remove("ZFS_VM_DISKS")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn until_leaves_the_stage_incomplete_from_reruns_and_shell_sees_a_checkpoint_without_changing_it() {
    let Some(zfs) = tier() else { return };
    let pool = ScratchPool::new(&zfs, "ibs", 256 << 20);
    let first = template(&pool);
    let work = format!("{}/work/g/w", pool.dataset());
    let snaps = || zfs.snapshots(&work).unwrap();
    let p = pool.plan("g", "sel", &Features::default());
    let build =
        |change: &dyn Fn(BuildOptions) -> BuildOptions| pool.build_plan(&p, &change(pool.opts()));
    let marker = |pool: &ScratchPool| {
        std::fs::read_to_string(pool.mountpoint(&work).join("m/marker")).unwrap()
    };

    // --until: steps up to `first + 1`, kept as a checkpoint; no output snapshot.
    let cp = format!("{work}@ib:after-{:03}", first + 1);
    assert_eq!(
        build(&|o| BuildOptions {
            until: Some(first + 1),
            ..o
        })
        .unwrap(),
        Outcome::Built
    );
    assert_eq!(
        ran(&pool),
        ((0..first + 2).collect(), "partial".to_string())
    );
    assert_eq!(snaps(), vec![cp.clone()]);
    assert_eq!(marker(&pool), format!("step {}\n", first + 1));
    assert!(matches!(
        build::cache_status(&p, &pool.opts(), &zfs).unwrap(),
        CacheStatus::Miss(_)
    ));

    // The next full build is no cache hit: it runs the rest from the checkpoint.
    assert_eq!(build(&|o| o).unwrap(), Outcome::Built);
    assert_eq!(ran(&pool), (vec![first + 2, first + 3], "miss".to_string()));
    assert_eq!(snaps(), [cp.clone(), format!("{work}@done")]);
    assert_eq!(build(&|o| o).unwrap(), Outcome::Cached);

    // --from reruns from its step, from the checkpoint of the steps before it.
    assert_eq!(
        build(&|o| BuildOptions {
            from: Some(first + 2),
            ..o
        })
        .unwrap(),
        Outcome::Built
    );
    assert_eq!(ran(&pool), (vec![first + 2, first + 3], "miss".to_string()));
    assert_eq!(snaps(), [cp.clone(), format!("{work}@done")]);
    assert_eq!(build(&|o| o).unwrap(), Outcome::Cached);
    // No checkpoint holds steps up to `first + 2`: refused, nothing changed.
    let e = build(&|o| BuildOptions {
        from: Some(first + 3),
        ..o
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&format!("step(s) {} would have to run first", first + 2)),
        "{e}"
    );
    assert_eq!(snaps(), [cp.clone(), format!("{work}@done")]);
    assert_eq!(build(&|o| o).unwrap(), Outcome::Cached);

    // shell --at: that checkpoint's tree, on a clone that is gone afterwards.
    let before = snaps();
    // The first shell may make its clone's parents (DATASET/tmp/GROUP, the layout's
    // scaffolding, as a build that needs a scratch dataset makes them); nothing else of
    // it may stay.
    let scaffolding = [
        format!("{}/tmp", pool.dataset()),
        format!("{}/tmp/g", pool.dataset()),
    ];
    let all = |zfs: &tier::Cli| {
        zfs.filesystems(&[&pool.dataset()], 10)
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .filter(|n| !scaffolding.contains(n))
            .collect::<Vec<_>>()
    };
    let datasets = all(&zfs);
    let at = (first + 1).to_string();
    let (code, out, err) = shell(&pool, &["--at", &at, "--", "/bin/cat", "/m/marker"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, format!("step {}\n", first + 1));
    // The output snapshot by default; a command's status is shell's.
    let (code, out, err) = shell(&pool, &["--", "/bin/cat", "/m/marker"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, format!("step {}\n", first + 3));
    let (code, _, _) = shell(&pool, &["--", "/bin/cat", "/m/none"]);
    assert_eq!(code, Some(1));
    // --failed: the work dataset as it is, through a snapshot that goes with the clone.
    std::fs::write(pool.mountpoint(&work).join("m/marker"), "changed\n").unwrap();
    let (code, out, err) = shell(&pool, &["--failed", "--", "/bin/cat", "/m/marker"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "changed\n");
    std::fs::write(
        pool.mountpoint(&work).join("m/marker"),
        format!("step {}\n", first + 3),
    )
    .unwrap();
    assert_eq!(snaps(), before);
    assert_eq!(all(&zfs), datasets);
    let journals = pool.output_dir().join(".image-builder/journals");
    let left: Vec<_> = std::fs::read_dir(&journals)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(left, Vec::<std::ffi::OsString>::new());
    assert_eq!(marker(&pool), format!("step {}\n", first + 3));
    assert_eq!(build(&|o| o).unwrap(), Outcome::Cached);
}
