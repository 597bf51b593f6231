//! The illumos steps' exact command lines, pinned with the recording runner: these tests
//! are what checks our pkg(1), svccfg(8) and devfsadm(8) usage on a non-illumos host.

use std::path::{Path, PathBuf};

use image_builder::host::Host;
use image_builder::steps::{DevfsSetup, SmfSeeding, StepCx, StepError};
use image_builder::template::check::Expander;
use image_builder::template::load::parse_step;
use image_builder::template::Features;
use runner::{Output, Recorder};
use tempfile::TempDir;

struct World {
    top: TempDir,
    root: confine::Root,
    rec: Recorder,
    zfs: zfs::ZfsCli<Recorder>,
}

impl World {
    fn new() -> World {
        let top = tempfile::tempdir().unwrap();
        for d in [
            "root/lib/svc/seed",
            "root/etc/svc",
            "templates/files",
            "output",
            "tmp",
        ] {
            std::fs::create_dir_all(top.path().join(d)).unwrap();
        }
        let root = confine::Root::open(top.path().join("root")).unwrap();
        World {
            top,
            root,
            // The steps' commands (pkg(1), svccfg(8), devfsadm(8) ...) succeed with no
            // output unless a test scripts them: every test pins the command lines run.
            rec: Recorder::new().allow_unmatched(),
            zfs: zfs::ZfsCli::new(
                Recorder::new(),
                zfs::ZfsTools::new("/sbin/zfs", "/sbin/zpool"),
            ),
        }
    }

    fn r(&self) -> String {
        self.top.path().join("root").display().to_string()
    }

    fn run_with(&self, json: &str, smf: SmfSeeding) -> Result<Vec<String>, StepError> {
        self.run_opts(json, smf, DevfsSetup::Devfsadm)
    }

    fn run_opts(
        &self,
        json: &str,
        smf: SmfSeeding,
        devfs: DevfsSetup,
    ) -> Result<Vec<String>, StepError> {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        let step = parse_step(&v).unwrap();
        let templates: PathBuf = self.top.path().join("templates");
        let output = self.top.path().join("output");
        let tmp = self.top.path().join("tmp");
        let cx = StepCx {
            host: Host::Illumos,
            runner: &self.rec,
            zfs: &self.zfs,
            root: &self.root,
            template_root: &templates,
            group: "g",
            external: &[],
            output_dir: &output,
            tmp_dir: &tmp,
            svccfg: Path::new("/opt/onbld/bin/i386/svccfg-native"),
            smf,
            devfs,
            source_date_epoch: None,
            pool: None,
            tag: "t".into(),
        };
        self.rec.clear();
        step.kind.execute(&cx)?;
        Ok(self.rec.lines())
    }

    fn run(&self, json: &str) -> Vec<String> {
        self.run_with(json, SmfSeeding::Import).unwrap()
    }

    /// Expands the step's macros under `features` (as a build's plan does), then runs it.
    fn run_expanded(&self, json: &str, features: &[&str]) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        let step = parse_step(&v).unwrap();
        let f = Features::from_directives(features).unwrap();
        let mut x = Expander::new(&f, true);
        let kind = step.kind.expand(&mut x);
        assert!(x.errors.is_empty(), "{:?}", x.errors);
        let expanded = serde_json::to_string(&kind).unwrap();
        self.run(&expanded)
    }
}

#[test]
fn pkg_image_create_and_publishers() {
    let w = World::new();
    let r = w.r();
    assert_eq!(
        w.run(r#"{ "t": "pkg_image_create", "publisher": "openindiana.org", "uri": "http://pkg.openindiana.org/hipster/" }"#),
        [format!("/usr/bin/pkg image-create --full --publisher openindiana.org=http://pkg.openindiana.org/hipster/ {r}")]
    );
    assert_eq!(
        w.run(r#"{ "t": "pkg_image_create" }"#),
        [format!("/usr/bin/pkg image-create --full {r}")]
    );
    assert_eq!(
        w.run(r#"{ "t": "pkg_set_publisher", "publisher": "helios-dev", "uri": "https://pkg.oxide.computer/helios/2/dev/", "mirror_uri": "https://mirror/" }"#),
        [format!("/usr/bin/pkg -R {r} set-publisher --no-refresh -O https://pkg.oxide.computer/helios/2/dev/ -M '*' -m https://mirror/ helios-dev")]
    );
    std::fs::write(w.top.path().join("templates/files/ca.pem"), "PEM").unwrap();
    assert_eq!(
        w.run(r#"{ "t": "pkg_approve_ca_cert", "publisher": "p", "certfile": "ca.pem" }"#),
        [format!(
            "/usr/bin/pkg -R {r} set-publisher --approve-ca-cert={}/templates/files/ca.pem p",
            w.top.path().display()
        )]
    );
    assert_eq!(
        w.run(r#"{ "t": "pkg_set_property", "name": "flush-content-cache-on-success", "value": "True" }"#),
        [format!("/usr/bin/pkg -R {r} set-property flush-content-cache-on-success True")]
    );
    assert_eq!(
        w.run(r#"{ "t": "pkg_purge_history" }"#),
        [format!("/usr/bin/pkg -R {r} purge-history")]
    );
}

/// `uris`: every URI an origin, in order. pkg(1) set-publisher: `-O` (`--origin-uri`)
/// cannot be combined with `-g`/`-G` (pkg5 src/modules/client/options.py,
/// opts_table_cb_pub_opts), so the origins are replaced with `-G '*'` (`--remove-origin`;
/// `*` removes them all: pkg5 src/modules/client/client_api.py, `_add_update_pub`) and
/// one `-g` (`--add-origin`) each.
#[test]
fn pkg_set_publisher_uris_are_origins_in_order() {
    let w = World::new();
    let r = w.r();
    assert_eq!(
        w.run(r#"{ "t": "pkg_set_publisher", "publisher": "helios-dev", "uris": ["https://b.example/helios/", "file:///a/repo"] }"#),
        [format!("/usr/bin/pkg -R {r} set-publisher --no-refresh -G '*' -g https://b.example/helios/ -g file:///a/repo helios-dev")]
    );
    // With a mirror: pkg(1) set-publisher `-M '*'` then `-m mirror_to_add`.
    assert_eq!(
        w.run(r#"{ "t": "pkg_set_publisher", "publisher": "p", "uris": ["https://o/"], "mirror_uri": "https://m/" }"#),
        [format!("/usr/bin/pkg -R {r} set-publisher --no-refresh -G '*' -g https://o/ -M '*' -m https://m/ p")]
    );
    // The way helios-build drives its ramdisk template: `-F publisher_0_url+=URL` per
    // origin, `"uris": [ "${@@publisher_0_url}" ]`; the order of the directives is kept.
    assert_eq!(
        w.run_expanded(
            r#"{ "t": "pkg_set_publisher", "publisher": "${publisher_0_name}", "uris": [ "${@@publisher_0_url}" ] }"#,
            &[
                "publisher_0_name=helios-dev",
                "publisher_0_url+=https://z.example/dev/",
                "publisher_0_url+=file:///local/repo",
            ],
        ),
        [format!("/usr/bin/pkg -R {r} set-publisher --no-refresh -G '*' -g https://z.example/dev/ -g file:///local/repo helios-dev")]
    );
    // `uri` alone keeps its `-O` form.
    assert_eq!(
        w.run(r#"{ "t": "pkg_set_publisher", "publisher": "p", "uri": "https://o/" }"#),
        [format!(
            "/usr/bin/pkg -R {r} set-publisher --no-refresh -O https://o/ p"
        )]
    );
    // Both forms at once run nothing.
    let e = w
        .run_with(
            r#"{ "t": "pkg_set_publisher", "publisher": "p", "uri": "https://o/", "uris": ["https://o2/"] }"#,
            SmfSeeding::Import,
        )
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "pkg_set_publisher takes `uri` or `uris`, not both: put every origin in `uris`"
    );
    assert!(w.rec.lines().is_empty());
}

/// pkg(1) install and uninstall take one or more pkg_fmri_pattern operands; a list that
/// expands to nothing runs no pkg command (the illumos image-builder's `pkg_install` and
/// `pkg_uninstall` skip an empty list the same way). `pkg_uninstall` expands macros.
#[test]
fn empty_package_lists_run_nothing_and_uninstall_expands_macros() {
    let w = World::new();
    let r = w.r();
    assert_eq!(
        w.run_expanded(
            r#"{ "t": "pkg_install", "pkgs": [ "${@extra}" ], "include_optional": true }"#,
            &[]
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        w.run_expanded(r#"{ "t": "pkg_uninstall", "pkgs": [ "${@drop}" ] }"#, &[]),
        Vec::<String>::new()
    );
    assert_eq!(
        w.run_expanded(
            r#"{ "t": "pkg_uninstall", "pkgs": [ "${@drop}", "${name}-tools" ] }"#,
            &["drop+=service/network/smtp/sendmail", "drop+=system/network/nis", "name=x"],
        ),
        [format!("/usr/bin/pkg -R {r} uninstall service/network/smtp/sendmail system/network/nis x-tools")]
    );
}

#[test]
fn pkg_install_treats_nothing_to_do_as_done_and_adds_optional_dependencies() {
    let w = World::new();
    let r = w.r();
    w.rec.on(
        "/usr/bin/pkg -R",
        Output::failed(4, "No updates necessary for this image."),
    );
    w.rec.on(
        &format!("/usr/bin/pkg -R {r} contents -t depend -a type=optional -H -o fmri entire"),
        Output::ok(
            "pkg://helios-dev/driver/network/opte@0.1\npkg:/system/zones/brand/omicron1@1.0\n",
        ),
    );
    w.rec.on(
        &format!("/usr/bin/pkg -R {r} contents -t depend -a type=optional -H -o fmri extra"),
        Output::failed(
            1,
            "pkg: contents: no matching actions found in the listed packages",
        ),
    );
    assert_eq!(
        w.run(r#"{ "t": "pkg_install", "pkgs": ["entire", "extra"], "include_optional": true }"#),
        [
            format!("/usr/bin/pkg -R {r} install entire extra"),
            format!("/usr/bin/pkg -R {r} contents -t depend -a type=optional -H -o fmri entire"),
            format!("/usr/bin/pkg -R {r} contents -t depend -a type=optional -H -o fmri extra"),
            format!("/usr/bin/pkg -R {r} install pkg:/driver/network/opte@0.1 pkg:/system/zones/brand/omicron1@1.0"),
        ]
    );
    w.rec
        .on("/usr/bin/pkg -R", Output::failed(1, "pkg: no such package"));
    let e = w
        .run_with(
            r#"{ "t": "pkg_uninstall", "pkgs": ["nope"] }"#,
            SmfSeeding::Import,
        )
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "`/usr/bin/pkg -R {r} uninstall nope` failed (exit status 1): pkg: no such package"
        )
    );
}

#[test]
fn variants_and_facets_change_only_when_they_differ() {
    let w = World::new();
    let r = w.r();
    w.rec.on(
        "/usr/bin/pkg -R",
        Output::ok(r#"[{"variant":"variant.arch","value":"i386"},{"variant":"variant.opensolaris.zone","value":"global"}]"#),
    );
    assert_eq!(
        w.run(r#"{ "t": "pkg_change_variant", "variant": "opensolaris.zone", "value": "global" }"#),
        [format!("/usr/bin/pkg -R {r} variant -F json")]
    );
    w.rec.on(
        "/usr/bin/pkg -R",
        Output::ok(r#"[{"facet":"facet.doc.man","masked":"False","src":"local","value":"True"}]"#),
    );
    assert_eq!(
        w.run(r#"{ "t": "pkg_change_facet", "facet": "doc.man", "value": "False" }"#),
        [
            format!("/usr/bin/pkg -R {r} facet -F json"),
            format!("/usr/bin/pkg -R {r} change-facet doc.man=False")
        ]
    );
}

#[test]
fn onu_sequence() {
    let w = World::new();
    let r = w.r();
    assert_eq!(
        w.run(r#"{ "t": "onu", "repo": "file:///onu/repo", "publisher": "helios-dev", "uninstall": ["driver/x"] }"#),
        [
            format!("/usr/bin/pkg -R {r} set-publisher --no-refresh --non-sticky helios-dev"),
            format!("/usr/bin/pkg -R {r} set-publisher -e --no-refresh -P -O file:///onu/repo on-nightly"),
            format!("/usr/bin/pkg -R {r} refresh --full"),
            format!("/usr/bin/pkg -R {r} uninstall driver/x"),
            format!("/usr/bin/pkg -R {r} change-facet onu.ooceonly=false"),
            format!("/usr/bin/pkg -R {r} update"),
            format!("/usr/bin/pkg -R {r} purge-history"),
        ]
    );
}

#[test]
fn devfsadm_runs_against_the_image_root() {
    let w = World::new();
    assert_eq!(
        w.run(r#"{ "t": "devfsadm" }"#),
        [format!("/usr/sbin/devfsadm -r {}", w.r())]
    );
}

#[test]
fn devfsadm_at_first_boot_runs_nothing_and_asks_for_a_reconfiguration_boot() {
    use std::os::unix::fs::MetadataExt;
    let w = World::new();
    let reconfigure = w.top.path().join("root/reconfigure");
    let lines = w
        .run_opts(
            r#"{ "t": "devfsadm" }"#,
            SmfSeeding::Import,
            DevfsSetup::AtFirstBoot,
        )
        .unwrap();
    assert!(lines.is_empty(), "{lines:?}");
    let m = std::fs::metadata(&reconfigure).unwrap();
    assert!(m.is_file());
    assert_eq!(
        (m.len(), m.mode() & 0o7777, m.uid(), m.gid()),
        (0, 0o644, 0, 0)
    );
    // A /reconfigure the image already has is kept as it is.
    std::fs::write(&reconfigure, "kept\n").unwrap();
    w.run_opts(
        r#"{ "t": "devfsadm" }"#,
        SmfSeeding::Import,
        DevfsSetup::AtFirstBoot,
    )
    .unwrap();
    assert_eq!(std::fs::read_to_string(&reconfigure).unwrap(), "kept\n");
    // Without the flag the image's /dev is made now, and /reconfigure is not touched.
    std::fs::remove_file(&reconfigure).unwrap();
    w.run(r#"{ "t": "devfsadm" }"#);
    assert!(!reconfigure.exists());
}

#[test]
fn seed_smf_imports_with_the_image_dtd_applies_profiles_and_installs_the_repository() {
    let w = World::new();
    let r = w.r();
    std::fs::write(w.top.path().join("root/lib/svc/seed/global.db"), "SEED").unwrap();
    let lines =
        w.run(r#"{ "t": "seed_smf", "debug": true, "apply_profiles": ["generic", "site"] }"#);
    let svccfg = "/opt/onbld/bin/i386/svccfg-native";
    assert_eq!(
        lines,
        [
            format!("{svccfg} import -p /dev/stdout {r}/lib/svc/manifest"),
            format!("{svccfg} -s system/svc/restarter:default addpg options application"),
            format!("{svccfg} -s system/svc/restarter:default setprop options/logging=debug"),
            format!("{svccfg} apply {r}/etc/svc/profile/generic.xml"),
            format!("{svccfg} apply {r}/var/svc/profile/site.xml"),
        ]
    );
    let repo = w.top.path().join("tmp/repo.db");
    for call in w.rec.calls() {
        assert_eq!(
            call.env_value("SVCCFG_DTD").unwrap(),
            Path::new(&format!("{r}/usr/share/lib/xml/dtd/service_bundle.dtd.1")).as_os_str()
        );
        assert_eq!(
            call.env_value("SVCCFG_REPOSITORY").unwrap(),
            repo.as_os_str()
        );
        assert_eq!(call.env_value("SVCCFG_CHECKHASH").unwrap(), "1");
        assert_eq!(
            call.env_value("PKG_INSTALL_ROOT").unwrap(),
            std::ffi::OsStr::new(&r)
        );
    }
    // The seed copied into the scratch repository is what gets installed (svccfg is not
    // really run here), and the scratch copy is gone.
    assert_eq!(
        std::fs::read(w.top.path().join("root/etc/svc/repository.db")).unwrap(),
        b"SEED"
    );
    assert!(!repo.exists());
}

#[test]
fn seed_smf_at_first_boot_installs_the_seed_without_svccfg() {
    let w = World::new();
    std::fs::write(w.top.path().join("root/lib/svc/seed/global.db"), "SEED").unwrap();
    std::fs::create_dir_all(w.top.path().join("root/etc/svc")).unwrap();
    let lines = w
        .run_with(r#"{ "t": "seed_smf" }"#, SmfSeeding::AtFirstBoot)
        .unwrap();
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(
        std::fs::read(w.top.path().join("root/etc/svc/repository.db")).unwrap(),
        b"SEED"
    );
}
