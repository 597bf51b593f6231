//! EC2 IMDS against a real HTTP server on 127.0.0.1 that behaves like IMDSv2 (token
//! required) or like IMDSv1 (no token endpoint).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::json;
use sysconfig::sources::ec2;

const TOKEN: &str = "AQAEAsecret-session-token==";

/// Serves IMDS paths; `require_token` makes it an IMDSv2-only service. Returns the
/// endpoint and the request lines seen (method, path, token header present).
fn server(require_token: bool, user_data: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    server_on(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        require_token,
        user_data,
    )
}

/// [`server`] on a listener of the caller's (an IPv6 one, say).
fn server_on(
    l: TcpListener,
    require_token: bool,
    user_data: &'static str,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut first = String::new();
            r.read_line(&mut first).unwrap();
            let mut token = None;
            let mut ttl = false;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("x-aws-ec2-metadata-token:") {
                    token = Some(v.trim().to_string());
                }
                if lower.starts_with("x-aws-ec2-metadata-token-ttl-seconds:") {
                    ttl = true;
                }
            }
            let mut parts = first.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
            );
            log.lock()
                .unwrap()
                .push(format!("{method} {path} token={}", token.is_some()));
            let good_token = token.as_deref() == Some(&TOKEN.to_ascii_lowercase());
            let (status, body): (u16, String) = match (method.as_str(), path.as_str()) {
                ("PUT", "/latest/api/token") if require_token && ttl => (200, TOKEN.into()),
                ("PUT", _) => (405, String::new()),
                _ if require_token && !good_token => (401, String::new()),
                (_, "/latest/meta-data/instance-id") => (200, "i-0abc123".into()),
                (_, "/latest/meta-data/local-hostname") => (200, "ip-10-0-0-5.ec2.internal".into()),
                (_, "/latest/meta-data/public-keys/") => (200, "0=my-key".into()),
                (_, "/latest/meta-data/public-keys/0/openssh-key") => {
                    (200, "ssh-ed25519 EEEE my-key\n".into())
                }
                (_, "/latest/user-data") if !user_data.is_empty() => (200, user_data.into()),
                _ => (404, String::new()),
            };
            let _ = write!(
                s,
                "HTTP/1.0 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (format!("http://{addr}"), seen)
}

/// Runs `f` and returns what it logged on this thread. The subscriber is the process'
/// global one, set once: a scoped `with_default` subscriber races with other test threads
/// that register the same callsites while no subscriber is in scope (tracing then caches
/// "never interested" for them and the event is lost), which made this flaky under load.
fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    use std::cell::RefCell;
    thread_local! {
        static LOGS: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    }
    struct ThreadBuf;
    impl Write for ThreadBuf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            LOGS.with(|l| {
                if let Some(v) = l.borrow_mut().as_mut() {
                    v.extend_from_slice(b);
                }
            });
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(|| ThreadBuf)
            .finish();
        tracing::subscriber::set_global_default(sub).expect("no other global subscriber");
    });
    LOGS.with(|l| *l.borrow_mut() = Some(Vec::new()));
    let out = f();
    let bytes = LOGS.with(|l| l.borrow_mut().take()).unwrap_or_default();
    (out, String::from_utf8_lossy(&bytes).into_owned())
}

#[test]
fn imdsv2_with_token_and_no_token_in_logs() {
    let (ep, seen) = server(true, "#cloud-config\ntimezone: UTC\n");
    let (found, logs) = capture_logs(|| ec2::read(&ep, 2000));
    let f = found.unwrap().unwrap();
    assert_eq!(f.instance_id.as_deref(), Some("i-0abc123"));
    assert_eq!(
        serde_json::Value::Object(f.desired),
        json!({"timezone":"UTC","hostname":"ip-10-0-0-5","users":[{"name":"root","ssh_authorized_keys":["ssh-ed25519 EEEE my-key"]}]})
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], "PUT /latest/api/token token=false");
    assert!(
        seen[1..].iter().all(|l| l.ends_with("token=true")),
        "{seen:?}"
    );
    assert!(logs.contains("IMDSv2"), "{logs}");
    assert!(
        !logs.contains("secret-session-token"),
        "the token leaked into the log: {logs}"
    );
}

#[test]
fn falls_back_to_imdsv1_when_the_token_call_is_refused() {
    let (ep, seen) = server(false, "");
    let f = ec2::read(&ep, 2000).unwrap().unwrap();
    assert_eq!(f.instance_id.as_deref(), Some("i-0abc123"));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], "PUT /latest/api/token token=false");
    assert!(
        seen[1..].iter().all(|l| l.ends_with("token=false")),
        "{seen:?}"
    );
}

#[test]
fn no_service_means_no_source_and_bad_user_data_is_an_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert!(ec2::read(&format!("http://127.0.0.1:{port}"), 500)
        .unwrap()
        .is_none());
    // Bad YAML stops the run (a wrong type is only a warning, as in cloud-init).
    let (ep, _) = server(true, "#cloud-config\nusers: [unclosed\n");
    let err = ec2::read(&ep, 2000).unwrap_err().to_string();
    assert!(
        err.starts_with("source ec2: user-data: part 1: line "),
        "{err}"
    );
    assert!(ec2::read("https://x", 10).is_err());
}

/// EC2's IPv6 endpoint is a bracketed literal (`http://[fd00:ec2::254]`): the same client
/// reaches a service on `[::1]`.
#[test]
fn an_ipv6_endpoint_is_reached() {
    let Ok(l) = TcpListener::bind("[::1]:0") else {
        eprintln!("skipped: this host has no IPv6 loopback");
        return;
    };
    let (ep, seen) = server_on(l, true, "");
    assert!(ep.starts_with("http://[::1]:"), "{ep}");
    let f = ec2::read(&ep, 2000).unwrap().unwrap();
    assert_eq!(f.instance_id.as_deref(), Some("i-0abc123"));
    assert_eq!(seen.lock().unwrap()[0], "PUT /latest/api/token token=false");
    // Without a port, and a malformed bracket is an error naming the endpoint.
    let e = ec2::read("http://[::1", 200).unwrap_err().to_string();
    assert!(e.contains("unclosed `[` in endpoint"), "{e}");
}
