//! `--store oci://` on a dataset stage that misses locally: the stored stream is fetched
//! into the stage's scratch dataset, made only for that, and received from there. The
//! registry is a stand-in serving the OCI distribution API's reads (distribution-spec
//! `spec.md`: `GET /v2/`, `GET /v2/NAME/manifests/REFERENCE`, `GET /v2/NAME/blobs/DIGEST`)
//! from a layout directory seeded as a build elsewhere would; tests/store_registry.rs runs
//! the store against a real registry.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use image_builder::build::stage_store;
use image_builder::build::{Event, Outcome};

use crate::stage_store::{seed_store, steps_run, World, GUID_ONE, WORK};

/// Serves `GET` requests from `layout` (an OCI image layout directory) on a loopback port
/// until the process ends: the manifest tagged `tag` under any manifest path, a blob by
/// digest, 404 for anything else. Returns the port.
fn serve(layout: PathBuf, tag: String, manifest_digest: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            // The request's headers, up to the empty line.
            let mut h = String::new();
            while reader.read_line(&mut h).is_ok_and(|n| n > 2) {
                h.clear();
            }
            let path = line.split(' ').nth(1).unwrap_or_default();
            let blob = |digest: &str| {
                let hex = digest.strip_prefix("sha256:").unwrap_or_default();
                std::fs::read(layout.join("blobs/sha256").join(hex)).ok()
            };
            let body = match path {
                "/v2/" => Some(Vec::new()),
                p if p.ends_with(&format!("/manifests/{tag}")) => blob(&manifest_digest),
                p => p.split_once("/blobs/").and_then(|(_, d)| blob(d)),
            };
            let (status, body) = match body {
                Some(b) => ("200 OK", b),
                None => ("404 Not Found", Vec::new()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
        }
    });
    port
}

#[test]
fn a_stage_fetched_from_a_registry_goes_through_a_scratch_dataset_made_for_it() {
    let w = World::new(&["one"]);
    let key = w.key("s2", Some(GUID_ONE));
    let store = seed_store(&w, &key, b"STREAM FROM A REGISTRY");
    let tag = stage_store::tag(&key);
    let (_, digest) = store.manifest(&tag).unwrap().unwrap();
    let port = serve(w.dir("store"), tag, digest);
    let url = format!("oci://127.0.0.1:{port}/ib/stages");
    let (r, events) = w.build("s2", &w.opts(&url, true));
    assert_eq!(r.unwrap(), Outcome::Cached);
    assert_eq!(steps_run(&events), 0, "{events:?}");
    assert_eq!(
        w.actions(),
        [
            format!("/sbin/zfs rollback -r {WORK}@one"),
            // Scratch space for the fetch, once the store has the stage.
            "/sbin/zfs create -p -o sync=disabled rpool/images/tmp/g/s2".to_string(),
            format!("/sbin/zfs receive -F {WORK}@two"),
            format!("/sbin/zfs set org.illumos.image-builder:key={key} {WORK}@two"),
            "/sbin/zfs destroy -r rpool/images/tmp/g/s2".to_string(),
        ]
    );
    // zfs receive read the fetched, verified copy in the scratch dataset (World mounts it
    // at W/tmp), which is gone once received.
    let recv = w.call(" receive ");
    let from = recv.get_stdin_file().unwrap();
    assert_eq!(from.parent(), Some(w.dir("tmp").as_path()), "{from:?}");
    assert_eq!(std::fs::read_dir(w.dir("tmp")).unwrap().count(), 0);
    assert_eq!(
        *w.received.lock().unwrap(),
        [b"STREAM FROM A REGISTRY".to_vec()]
    );
    assert!(events.iter().any(|e| matches!(e, Event::StoreHit { .. })));
}
