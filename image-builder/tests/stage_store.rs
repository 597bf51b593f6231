//! `--store` on dataset stages through the whole engine: the illumos `zfs send` and `zfs
//! receive` command lines pinned with the recording runner (ZFS answered from a script),
//! the store a real OCI image layout directory (tests/store_registry.rs runs the store
//! itself against a real registry). zfs-send(8): `zfs send -i SNAP SNAP` writes an
//! incremental stream on standard output, `zfs send SNAP` a full one; zfs-receive(8):
//! `zfs receive -F SNAP` reads one on standard input, rolling back to the newest snapshot
//! first. Both print nothing on success.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use image_builder::build::stage_store::{self, StoreOptions};
use image_builder::build::{self, cache, BuildError, BuildOptions, Env, Event, Outcome};
use image_builder::host::Host;
use image_builder::store::{media, Store, StoreUrl};
use image_builder::template::{plan, Features, Plan, PlanOptions};
use runner::{Cmd, Output, Recorder, RunError, Runner};

pub(crate) const WORK: &str = "rpool/images/work/g/w";
/// The input snapshot's GUID (zfs(8) get -p prints it as a decimal 64-bit number).
pub(crate) const GUID_ONE: &str = "8815304164313270471";

pub(crate) struct World {
    top: tempfile::TempDir,
    pub(crate) rec: Recorder,
    /// The bytes `zfs receive` read on standard input, per call.
    pub(crate) received: Mutex<Vec<Vec<u8>>>,
}

impl Runner for World {
    fn output(&self, cmd: &Cmd) -> Result<Output, RunError> {
        if let Some(f) = cmd.get_stdin_file() {
            self.received
                .lock()
                .unwrap()
                .push(std::fs::read(f).unwrap_or_default());
        }
        self.rec.output(cmd)
    }
}

impl World {
    /// The first recorded command whose line contains `part`.
    pub(crate) fn call(&self, part: &str) -> runner::Cmd {
        self.rec
            .calls()
            .into_iter()
            .find(|c| c.display().contains(part))
            .unwrap_or_else(|| panic!("no command with {part:?}: {:#?}", self.rec.lines()))
    }

    /// A world whose work dataset holds `snaps` (none: it does not exist).
    pub(crate) fn new(snaps: &[&str]) -> World {
        let top = tempfile::tempdir().unwrap();
        for d in ["t/g", "output", "tmp", "work/etc", "store"] {
            std::fs::create_dir_all(top.path().join(d)).unwrap();
        }
        let stage = |name: &str, input: Option<&str>, output: &str| {
            let input = input
                .map(|i| format!(r#""input_snapshot": "{i}", "#))
                .unwrap_or_default();
            std::fs::write(
                top.path().join(format!("t/g/{name}.json")),
                format!(
                    r#"{{ "dataset": {{ "name": "w", {input}"output_snapshot": "{output}" }},
                         "steps": [ {{ "t": "ensure_file", "file": "/etc/{name}", "contents": "x\n",
                                      "owner": "root", "group": "root", "mode": "644" }} ] }}"#
                ),
            )
            .unwrap();
        };
        stage("s1", None, "one");
        stage("s2", Some("one"), "two");
        // Commands without a rule succeed with no output, as zfs(8) create, destroy,
        // rollback, snapshot, set and receive do; every such command is pinned below.
        // zfs send's scripted output is written to the file it is sent to.
        let rec = Recorder::new().allow_unmatched().write_stdout_files();
        let w = World {
            top,
            rec,
            received: Mutex::new(Vec::new()),
        };
        let mut names = vec![
            "rpool/images".to_string(),
            "rpool/images/output".to_string(),
        ];
        if !snaps.is_empty() {
            names.push(WORK.to_string());
        }
        names.extend(snaps.iter().map(|s| format!("{WORK}@{s}")));
        // Longest first: rules match by prefix, first added first.
        for n in names.iter().rev() {
            w.rec.always(
                &format!("/sbin/zfs list -H -p -o name -t all {n}"),
                Output::ok(format!("{n}\n")),
            );
        }
        for s in snaps {
            w.rec.always(
                &format!("/sbin/zfs get -H -p -o value,source guid {WORK}@{s}"),
                Output::ok(format!("{GUID_ONE}\t-\n")),
            );
        }
        for (ds, dir) in [
            ("rpool/images/output", "output"),
            ("rpool/images/tmp/g/s1", "tmp"),
            ("rpool/images/tmp/g/s2", "tmp"),
            (WORK, "work"),
        ] {
            w.rec.always(
                &format!("/sbin/zfs get -H -p -o value,source mountpoint {ds}"),
                Output::ok(format!("{}\tlocal\n", w.dir(dir).display())),
            );
            w.rec.always(
                &format!("/sbin/zfs get -H -p -o value,source mounted {ds}"),
                Output::ok("yes\t-\n"),
            );
        }
        w
    }

    pub(crate) fn dir(&self, name: &str) -> PathBuf {
        self.top.path().join(name)
    }

    pub(crate) fn plan(&self, name: &str) -> Plan {
        let p = plan(
            &self.dir("t"),
            "g",
            name,
            &Features::default(),
            &PlanOptions::default(),
        );
        assert!(p.is_valid(), "{:?}", p.problems);
        p
    }

    pub(crate) fn opts(&self, store: &str, required: bool) -> BuildOptions {
        BuildOptions {
            assume_tools: true,
            store: Some(StoreOptions {
                url: StoreUrl::parse(store).unwrap(),
                required,
            }),
            ..BuildOptions::new("rpool/images", self.dir("t"))
        }
    }

    pub(crate) fn store_url(&self) -> String {
        format!("file://{}", self.dir("store").display())
    }

    pub(crate) fn key(&self, name: &str, input_guid: Option<&str>) -> String {
        cache::inputs(
            &self.plan(name),
            &self.opts(&self.store_url(), false),
            &self.dir("output"),
            input_guid.map(str::to_string),
        )
        .unwrap()
        .key()
    }

    pub(crate) fn build(
        &self,
        name: &str,
        opts: &BuildOptions,
    ) -> (Result<Outcome, BuildError>, Vec<Event>) {
        let zfs = zfs::ZfsCli::new(self, zfs::ZfsTools::in_dir("/sbin"));
        let env = Env {
            host: Host::Illumos,
            runner: self,
            zfs: &zfs,
        };
        let mut events = Vec::new();
        let r = build::build(&self.plan(name), opts, &env, &mut |e| {
            events.push(e.clone())
        });
        (r, events)
    }

    /// The recorded commands that change something, the temporary directory as `W`.
    pub(crate) fn actions(&self) -> Vec<String> {
        let w = self.top.path().display().to_string();
        self.rec
            .lines()
            .into_iter()
            .filter(|l| !(l.contains(" list ") || l.contains("zfs get ")))
            .map(|l| l.replace(&w, "W"))
            .collect()
    }
}

pub(crate) fn steps_run(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::StepStart { .. }))
        .count()
}

/// Pushes a stage-two artifact for `key` into the layout store, as a build elsewhere would.
pub(crate) fn seed_store(w: &World, key: &str, stream: &[u8]) -> Store {
    seed(w, key, Some(GUID_ONE), stream)
}

pub(crate) fn seed(w: &World, key: &str, input_guid: Option<&str>, stream: &[u8]) -> Store {
    let store = Store::open(&StoreUrl::parse(&w.store_url()).unwrap()).unwrap();
    let f = w.dir("seed.zfs");
    std::fs::write(&f, stream).unwrap();
    let mut annotations = std::collections::BTreeMap::from([(
        stage_store::KEY_ANNOTATION.to_string(),
        key.to_string(),
    )]);
    if let Some(g) = input_guid {
        annotations.insert(
            stage_store::INPUT_GUID_ANNOTATION.to_string(),
            g.to_string(),
        );
    }
    store
        .push_artifact(
            &stage_store::tag(key),
            media::STAGE,
            &[image_builder::store::ArtifactFile {
                path: f,
                media_type: media::ZFS_SEND.into(),
                name: "stage.zfs".into(),
            }],
            annotations,
        )
        .unwrap();
    store
}

#[test]
fn a_built_first_stage_is_pushed_as_its_full_send_stream() {
    let w = World::new(&[]);
    // zfs-send(8): the stream on standard output (here, scripted bytes).
    w.rec.on(
        &format!("/sbin/zfs send {WORK}@one"),
        Output::ok("FULL STREAM"),
    );
    // zfs-get(8) -H -p -o value,source: the value and its source ("-" for guid), tab
    // separated.
    w.rec.on(
        &format!("/sbin/zfs get -H -p -o value,source guid {WORK}@one"),
        Output::ok("1234567\t-\n"),
    );
    let (r, events) = w.build("s1", &w.opts(&w.store_url(), false));
    assert_eq!(r.unwrap(), Outcome::Built);
    assert_eq!(steps_run(&events), 1);
    let key = w.key("s1", None);
    let actions = w.actions();
    let at = actions
        .iter()
        .position(|l| {
            l.starts_with(&format!(
                "/sbin/zfs snapshot -o org.illumos.image-builder:key={key} {WORK}@one"
            ))
        })
        .unwrap_or_else(|| panic!("{actions:#?}"));
    assert_eq!(actions[at + 1], format!("/sbin/zfs send {WORK}@one"));
    let send = w.call(" send ");
    // zfs send writes straight into a temporary file beside the store's blobs, which is
    // renamed to its digest once complete and hashed.
    let sent_to = send.get_stdout_file().unwrap();
    assert_eq!(
        sent_to.parent(),
        Some(w.dir("store/blobs/sha256").as_path())
    );
    assert!(
        sent_to
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".partial-"),
        "{}",
        sent_to.display()
    );
    assert!(!sent_to.exists());
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::StorePush { tag, .. } if *tag == stage_store::tag(&key))),
        "{events:?}"
    );
    // What the store holds: the stream, the record, and the annotations.
    let store = Store::open(&StoreUrl::parse(&w.store_url()).unwrap()).unwrap();
    let out = w.dir("pulled");
    std::fs::create_dir(&out).unwrap();
    let (m, _, _) = store
        .pull_artifact(&stage_store::tag(&key), &out)
        .unwrap()
        .unwrap();
    assert_eq!(
        std::fs::read(out.join("stage.zfs")).unwrap(),
        b"FULL STREAM"
    );
    assert_eq!(m.annotations[stage_store::KEY_ANNOTATION], key);
    assert_eq!(m.annotations[stage_store::TEMPLATE_ANNOTATION], "g/s1");
    assert_eq!(
        m.annotations[stage_store::OUTPUT_GUID_ANNOTATION],
        "1234567"
    );
    assert_eq!(
        m.annotations[stage_store::VERSION_ANNOTATION],
        env!("CARGO_PKG_VERSION")
    );
    assert!(!m
        .annotations
        .contains_key(stage_store::INPUT_GUID_ANNOTATION));
    let record: serde_json::Value =
        serde_json::from_str(&m.annotations[stage_store::RECORD_ANNOTATION]).unwrap();
    assert_eq!(record["key"], key.as_str());
    assert_eq!(
        record,
        serde_json::from_slice::<serde_json::Value>(
            &std::fs::read(out.join("build.json")).unwrap()
        )
        .unwrap()
    );
    // The stream did not stay in the scratch dataset.
    assert!(!w.dir("tmp/stage.zfs").exists());
}

#[test]
fn a_later_stage_is_pushed_as_an_incremental_stream_from_its_input() {
    let w = World::new(&["one"]);
    w.rec.on(
        &format!("/sbin/zfs send -i {WORK}@one {WORK}@two"),
        Output::ok("INCREMENTAL"),
    );
    let (r, _) = w.build("s2", &w.opts(&w.store_url(), false));
    assert_eq!(r.unwrap(), Outcome::Built);
    let key = w.key("s2", Some(GUID_ONE));
    let store = Store::open(&StoreUrl::parse(&w.store_url()).unwrap()).unwrap();
    let (m, _) = store.manifest(&stage_store::tag(&key)).unwrap().unwrap();
    assert_eq!(m.annotations[stage_store::INPUT_GUID_ANNOTATION], GUID_ONE);
    assert!(w
        .actions()
        .contains(&format!("/sbin/zfs send -i {WORK}@one {WORK}@two")));
}

#[test]
fn a_stage_missing_locally_is_received_from_the_store_without_running_a_step() {
    let w = World::new(&["one"]);
    let key = w.key("s2", Some(GUID_ONE));
    seed_store(&w, &key, b"STREAM FROM ELSEWHERE");
    let (r, events) = w.build("s2", &w.opts(&w.store_url(), false));
    assert_eq!(r.unwrap(), Outcome::Cached);
    assert_eq!(steps_run(&events), 0, "{events:?}");
    assert!(!w.dir("work/etc/s2").exists());
    assert_eq!(
        w.actions(),
        [
            // The miss: back to the input snapshot, which the stream starts from.
            format!("/sbin/zfs rollback -r {WORK}@one"),
            format!("/sbin/zfs receive -F {WORK}@two"),
            // The key goes on only once the stream is in. A layout directory's blob is
            // received from where it is: no scratch dataset.
            format!("/sbin/zfs set org.illumos.image-builder:key={key} {WORK}@two"),
        ]
    );
    let recv = w.call(" receive ");
    // zfs receive read the verified stream from the store's blob itself: a layout
    // directory's blob is checked in place, not copied.
    let (m, _) = Store::open(&StoreUrl::parse(&w.store_url()).unwrap())
        .unwrap()
        .manifest(&stage_store::tag(&key))
        .unwrap()
        .unwrap();
    assert_eq!(
        recv.get_stdin_file(),
        Some(
            w.dir("store/blobs/sha256")
                .join(&m.layers[0].digest[7..])
                .as_path()
        )
    );
    assert_eq!(std::fs::read_dir(w.dir("tmp")).unwrap().count(), 0);
    assert_eq!(
        *w.received.lock().unwrap(),
        [b"STREAM FROM ELSEWHERE".to_vec()]
    );
    assert!(events.iter().any(
        |e| matches!(e, Event::StoreHit { snapshot, .. } if *snapshot == format!("{WORK}@two"))
    ));
}

#[test]
fn a_first_stage_missing_locally_is_received_as_a_full_stream_over_the_new_dataset() {
    let w = World::new(&[]);
    let key = w.key("s1", None);
    seed(&w, &key, None, b"FULL FROM ELSEWHERE");
    let (r, events) = w.build("s1", &w.opts(&w.store_url(), false));
    assert_eq!(r.unwrap(), Outcome::Cached);
    assert_eq!(steps_run(&events), 0, "{events:?}");
    assert_eq!(
        w.actions(),
        [
            format!("/sbin/zfs create -p {WORK}"),
            // zfs-receive(8) -F: a full stream replaces the empty file system just made.
            format!("/sbin/zfs receive -F {WORK}@one"),
            format!("/sbin/zfs set org.illumos.image-builder:key={key} {WORK}@one"),
        ]
    );
    assert_eq!(
        *w.received.lock().unwrap(),
        [b"FULL FROM ELSEWHERE".to_vec()]
    );
}

#[test]
fn a_stored_stage_for_another_input_is_not_received() {
    // The tag is the key, but a manifest whose input GUID disagrees is refused.
    let w = World::new(&["one"]);
    let key = w.key("s2", Some(GUID_ONE));
    seed(&w, &key, Some("42"), b"WRONG INPUT");
    w.rec.always("/sbin/zfs send -i", Output::ok("LOCAL"));
    let (r, events) = w.build("s2", &w.opts(&w.store_url(), false));
    assert_eq!(r.unwrap(), Outcome::Built);
    assert_eq!(steps_run(&events), 1);
    assert!(w.received.lock().unwrap().is_empty());
}

#[test]
fn a_corrupted_stored_stream_is_refused_and_the_stage_builds_locally() {
    let w = World::new(&["one"]);
    let key = w.key("s2", Some(GUID_ONE));
    let store = seed_store(&w, &key, b"STREAM FROM ELSEWHERE");
    let (m, _) = store.manifest(&stage_store::tag(&key)).unwrap().unwrap();
    let blob = w.dir("store/blobs/sha256").join(&m.layers[0].digest[7..]);
    std::fs::write(&blob, b"STREAM FROM ELSEWHERx").unwrap();
    w.rec.always("/sbin/zfs send -i", Output::ok("LOCAL"));
    let (r, events) = w.build("s2", &w.opts(&w.store_url(), false));
    assert_eq!(r.unwrap(), Outcome::Built);
    assert_eq!(steps_run(&events), 1);
    assert!(
        w.received.lock().unwrap().is_empty(),
        "a corrupted stream was received"
    );
    assert!(!w.actions().iter().any(|l| l.contains("receive")));

    // --store-required: the same is an error, and nothing is received or built.
    let w2 = World::new(&["one"]);
    let store2 = seed_store(&w2, &key, b"STREAM FROM ELSEWHERE");
    let (m2, _) = store2.manifest(&stage_store::tag(&key)).unwrap().unwrap();
    std::fs::write(
        w2.dir("store/blobs/sha256").join(&m2.layers[0].digest[7..]),
        b"STREAM FROM ELSEWHERx",
    )
    .unwrap();
    let (r, events) = w2.build("s2", &w2.opts(&w2.store_url(), true));
    let e = r.unwrap_err().to_string();
    assert!(
        e.starts_with("--store-required: fetching stage-") && e.contains("refused"),
        "{e}"
    );
    assert_eq!(steps_run(&events), 0);
    assert!(w2.received.lock().unwrap().is_empty());
}

#[test]
fn an_unreachable_store_is_a_warning_and_the_stage_builds_locally() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("oci://127.0.0.1:{port}/ib/stages");
    let w = World::new(&[]);
    let (r, events) = w.build("s1", &w.opts(&url, false));
    assert_eq!(r.unwrap(), Outcome::Built);
    assert_eq!(steps_run(&events), 1);
    assert!(!events.iter().any(|e| matches!(e, Event::StorePush { .. })));

    let w = World::new(&[]);
    let (r, events) = w.build("s1", &w.opts(&url, true));
    let e = r.unwrap_err().to_string();
    assert!(
        e.starts_with("--store-required: the store: store oci://127.0.0.1:"),
        "{e}"
    );
    assert!(e.contains("cannot be reached"), "{e}");
    assert_eq!(steps_run(&events), 0);
    assert!(!Path::new(&w.dir("work/etc/s1")).exists());
}

fn run(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_image-builder"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

#[test]
fn a_bad_store_url_and_store_required_alone_are_usage_errors() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("g")).unwrap();
    std::fs::write(
        t.path().join("g/s.json"),
        r#"{ "dataset": { "name": "w", "output_snapshot": "one" }, "steps": [] }"#,
    )
    .unwrap();
    let tdir = t.path().display().to_string();
    let base = [
        "build",
        "-d",
        "rpool/images",
        "-T",
        &tdir,
        "-g",
        "g",
        "-n",
        "s",
    ];
    let o = run(&[&base[..], &["--store", "http://registry.example/ib"]].concat());
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(
            "--store: store http://registry.example/ib: a store is oci://HOST[:PORT]/REPO, \
             oci+https://HOST[:PORT]/REPO or file:///DIR"
        ),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(&[&base[..], &["--store-required"]].concat());
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--store <URL>"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(&["matrix", "--store", "oci://Bad/x", "--help"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
