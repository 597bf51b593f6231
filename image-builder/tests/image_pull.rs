//! Images in the store: an image build's outputs pushed with their SHA256SUMS lines and
//! build record (`build::image_store`), and `image-builder pull` fetching and verifying
//! them, from an OCI image layout directory (tests/store_registry.rs pulls from a real
//! registry).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use image_builder::build::image_store;
use image_builder::build::stage_store::StoreOptions;
use image_builder::build::Event;
use image_builder::store::{media, ArtifactFile, Store, StoreUrl};
use sha2::{Digest, Sha256};

fn pull(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-builder"))
        .arg("pull")
        .args(args)
        .output()
        .unwrap()
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn an_image_build_is_pushed_and_pull_verifies_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("output");
    std::fs::create_dir(&out).unwrap();
    let esp = vec![0xebu8; 50_000];
    std::fs::write(out.join("g-esp.pcfs"), &esp).unwrap();
    std::fs::write(out.join("g-other.raw"), b"another build's image").unwrap();
    // SHA256SUMS lists every output of the directory, as build::record writes it.
    std::fs::write(
        out.join("SHA256SUMS"),
        format!(
            "{}  g-esp.pcfs\n{}  g-other.raw\n",
            hex(&esp),
            hex(b"another build's image")
        ),
    )
    .unwrap();
    std::fs::write(
        out.join("g-esp.build.json"),
        r#"{"group":"g","name":"esp"}"#,
    )
    .unwrap();
    let store_dir = tmp.path().join("store");
    let opts = StoreOptions {
        url: StoreUrl::parse(&format!("file://{}", store_dir.display())).unwrap(),
        required: true,
    };
    let mut events = Vec::new();
    image_store::push(
        &opts,
        &out,
        &image_store::ImageId {
            group: "g",
            output_name: "esp",
            key: None,
        },
        &["g-esp.pcfs".to_string()],
        &out.join("g-esp.build.json"),
        &mut |e| events.push(e.clone()),
    )
    .unwrap();
    assert!(
        matches!(&events[..], [Event::StorePush { tag, .. }] if tag == "image-g-esp"),
        "{events:?}"
    );
    let (m, _) = Store::open(&opts.url)
        .unwrap()
        .manifest("image-g-esp")
        .unwrap()
        .unwrap();
    assert_eq!(m.artifact_type.as_deref(), Some(media::IMAGE));
    let types: Vec<&str> = m.layers.iter().map(|l| l.media_type.as_str()).collect();
    assert_eq!(types, [media::PCFS, media::SHA256SUMS, media::RECORD]);
    assert_eq!(m.annotations["org.illumos.image-builder.template"], "g/esp");

    let dest = tmp.path().join("pulled");
    let r = format!("file://{}:image-g-esp", store_dir.display());
    let o = pull(&[&r, dest.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(dest.join("g-esp.pcfs")).unwrap(), esp);
    // Only this image's line of SHA256SUMS went with it.
    assert_eq!(
        std::fs::read_to_string(dest.join("SHA256SUMS")).unwrap(),
        format!("{}  g-esp.pcfs\n", hex(&esp))
    );
    assert!(dest.join("g-esp.build.json").is_file());
    let listed = String::from_utf8(o.stdout).unwrap();
    assert_eq!(listed.lines().count(), 3, "{listed}");
}

#[test]
fn pull_refuses_files_that_do_not_match_their_sha256sums() {
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    let url = StoreUrl::parse(&format!("file://{}", store_dir.display())).unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("disk.raw"), b"the image").unwrap();
    std::fs::write(
        src.join("SHA256SUMS"),
        format!("{}  disk.raw\n", hex(b"another image")),
    )
    .unwrap();
    let file = |n: &str, t: &str| ArtifactFile {
        path: src.join(n),
        media_type: t.into(),
        name: n.into(),
    };
    Store::open(&url)
        .unwrap()
        .push_artifact(
            "v1",
            media::IMAGE,
            &[
                file("disk.raw", media::DISK_RAW),
                file("SHA256SUMS", media::SHA256SUMS),
            ],
            BTreeMap::new(),
        )
        .unwrap();
    let dest = tmp.path().join("pulled");
    let r = format!("file://{}:v1", store_dir.display());
    let o = pull(&[&r, dest.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("disk.raw: its sha256 is") && e.contains("but SHA256SUMS says"),
        "{e}"
    );

    // A tag the store does not have is a failure; a malformed reference bad input.
    let r = format!("file://{}:v2", store_dir.display());
    let o = pull(&[&r, dest.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no v2"));
    let o = pull(&["oci://host/repo", dest.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!Path::new(&dest).join("v2").exists());
}

/// A pcfs build through the engine with `--store` (illumos command lines answered by the
/// recording runner, as in tests/image_builds.rs): the finished image is pushed.
#[test]
fn a_pcfs_build_with_a_store_pushes_its_image() {
    use image_builder::build::{self, BuildOptions, Env};
    use image_builder::host::Host;
    use image_builder::template::{plan, Features, PlanOptions};
    use runner::{Output, Recorder};

    let top = tempfile::tempdir().unwrap();
    let dir = |n: &str| top.path().join(n);
    for d in ["t/g", "output"] {
        std::fs::create_dir_all(dir(d)).unwrap();
    }
    std::fs::write(
        dir("t/g/img.json"),
        r#"{ "pcfs": { "label": "ESP", "size": 33 }, "steps": [] }"#,
    )
    .unwrap();
    // Commands without a rule succeed with no output, as zfs(8) create and destroy,
    // mkfs(8), mount(8) and umount(8) do; the queries get rules.
    let rec = Recorder::new().allow_unmatched();
    for ds in ["rpool/images/output", "rpool/images"] {
        rec.always(
            &format!("/sbin/zfs list -H -p -o name -t all {ds}"),
            Output::ok(format!("{ds}\n")),
        );
    }
    let ds = "rpool/images/output";
    rec.always(
        &format!("/sbin/zfs get -H -p -o value,source mountpoint {ds}"),
        Output::ok(format!("{}\tlocal\n", dir("output").display())),
    );
    rec.always(
        &format!("/sbin/zfs get -H -p -o value,source mounted {ds}"),
        Output::ok("yes\t-\n"),
    );
    // lofiadm(8): a file with no device fails the query; `-a` prints /dev/lofi/N. The
    // image file is made in the build's work directory in the output dataset.
    let image = dir("output/.image-builder/work/g-img/lofi.pcfs");
    rec.on(
        &format!("/usr/sbin/lofiadm {}", image.display()),
        Output::failed(1, "none"),
    );
    rec.on("/usr/sbin/lofiadm -a", Output::ok("/dev/lofi/3\n"));
    let p = plan(
        &dir("t"),
        "g",
        "img",
        &Features::default(),
        &PlanOptions::default(),
    );
    assert!(p.is_valid(), "{:?}", p.problems);
    let zfs = zfs::ZfsCli::new(&rec, zfs::ZfsTools::in_dir("/sbin"));
    let env = Env {
        host: Host::Illumos,
        runner: &rec,
        zfs: &zfs,
    };
    let store = dir("store");
    let opts = BuildOptions {
        assume_tools: true,
        store: Some(StoreOptions {
            url: StoreUrl::parse(&format!("file://{}", store.display())).unwrap(),
            required: true,
        }),
        ..BuildOptions::new("rpool/images", dir("t"))
    };
    let mut pushed = Vec::new();
    build::build(&p, &opts, &env, &mut |e| {
        if let Event::StorePush { tag, .. } = e {
            pushed.push(tag.clone());
        }
    })
    .unwrap();
    assert_eq!(pushed, ["image-g-img"]);
    let pulled = dir("pulled");
    let r = format!("file://{}:image-g-img", store.display());
    let o = pull(&[&r, pulled.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(pulled.join("g-img.pcfs")).unwrap(),
        std::fs::read(dir("output/g-img.pcfs")).unwrap()
    );
    let sums = std::fs::read_to_string(pulled.join("SHA256SUMS")).unwrap();
    assert!(sums.ends_with("  g-img.pcfs\n"), "{sums}");
    assert!(pulled.join("g-img.build.json").is_file());
    assert_eq!(rec.unused_rules(), Vec::<String>::new());
}
