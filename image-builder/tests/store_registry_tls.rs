//! The store against a real registry over HTTPS with a private CA, and with Bearer token
//! authentication: `docker-registry` (see `common::registry`) with `http.tls` or
//! `auth.token`, certificates and keys made at test time with the `openssl` command, and a
//! token server of our own on 127.0.0.1 that issues JWTs signed with `openssl dgst`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use image_builder::store::{media, Store, StoreError};

use crate::common::registry::{no_registry, skip, write_file, Registry};

const OPENSSL: &str = "/usr/bin/openssl";

fn no_openssl() -> bool {
    !Path::new(OPENSSL).exists() && skip(&format!("{OPENSSL} is missing (Debian package openssl)"))
}

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new(OPENSSL)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A CA (`ca.pem`) and a certificate for 127.0.0.1 that it signed (`server.pem`,
/// `server.key`), in `dir`.
fn make_ca_and_server_cert(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=image-builder test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
}

/// An environment of only these variables, for [`Store::open_with_env`].
fn env_of(vars: &[(&'static str, String)]) -> impl Fn(&str) -> Option<String> {
    let vars = vars.to_vec();
    move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
}

/// `image-builder -vv pull REF DIR` with only `env` of the store's variables set.
fn cli_pull(reference: &str, dest: &Path, env: &[(&str, &str)]) -> Output {
    let home = dest.with_extension("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_image-builder"));
    c.args(["-vv", "pull", reference]).arg(dest);
    for k in [
        "IMAGE_BUILDER_STORE_USERNAME",
        "IMAGE_BUILDER_STORE_PASSWORD",
        "REGISTRY_AUTH_FILE",
        "DOCKER_CONFIG",
        "XDG_RUNTIME_DIR",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ] {
        c.env_remove(k);
    }
    c.env("HOME", &home);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn https_to_a_registry_with_a_private_ca_trusted_through_ssl_cert_file() {
    if no_registry() || no_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    make_ca_and_server_cert(&pki);
    let reg = Registry::start_config(
        tmp.path(),
        "",
        Some((&pki.join("server.pem"), &pki.join("server.key"))),
    );
    let url = reg.url("ib/images");
    assert!(url.to_string().starts_with("oci+https://127.0.0.1:"));
    let ca = pki.join("ca.pem").display().to_string();

    // Pushed and pulled back, trusting the CA through SSL_CERT_FILE.
    let store = Store::open_with_env(&url, &env_of(&[("SSL_CERT_FILE", ca.clone())])).unwrap();
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let f = write_file(tmp.path(), "disk.raw", &bytes, media::DISK_RAW);
    let digest = store
        .push_artifact("v1", media::IMAGE, &[f], BTreeMap::new())
        .unwrap();
    let out = tmp.path().join("ours");
    std::fs::create_dir(&out).unwrap();
    let (_, got, _) = store.pull_artifact("v1", &out).unwrap().unwrap();
    assert_eq!(got, digest);
    assert_eq!(std::fs::read(out.join("disk.raw")).unwrap(), bytes);
    // Or through SSL_CERT_DIR.
    let env = env_of(&[("SSL_CERT_DIR", pki.join("cadir").display().to_string())]);
    std::fs::create_dir(pki.join("cadir")).unwrap();
    std::fs::copy(pki.join("ca.pem"), pki.join("cadir/ca.pem")).unwrap();
    let (m, _) = Store::open_with_env(&url, &env)
        .unwrap()
        .manifest("v1")
        .unwrap()
        .unwrap();
    assert_eq!(m.layers[0].size, bytes.len() as u64);

    // The command line, with SSL_CERT_FILE in its environment.
    let reference = format!("{}:v1", reg.address("ib/images"));
    let dest = tmp.path().join("cli");
    let o = cli_pull(&reference, &dest, &[("SSL_CERT_FILE", &ca)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(dest.join("disk.raw")).unwrap(), bytes);

    // Without the CA: refused, saying why and what to set.
    let err = Store::open_with_env(&url, &env_of(&[]))
        .err()
        .expect("a certificate from an unknown CA was accepted");
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");
    let e = err.to_string();
    assert!(
        e.contains("certificate") && e.contains("SSL_CERT_FILE"),
        "{e}"
    );
    let o = cli_pull(&reference, &tmp.path().join("untrusted"), &[]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("certificate") && !e.contains("panicked"), "{e}");
    // A CA that is not the registry's is no better than none.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    make_ca_and_server_cert(&other);
    let env = env_of(&[("SSL_CERT_FILE", other.join("ca.pem").display().to_string())]);
    let err = Store::open_with_env(&url, &env).err().expect("accepted");
    assert!(err.to_string().contains("certificate"), "{err}");

    // A file that holds no certificate: an error naming it, before any connection.
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let o = cli_pull(
        &reference,
        &tmp.path().join("junk"),
        &[("SSL_CERT_FILE", junk.to_str().unwrap())],
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{e}");
    assert!(e.contains("junk.pem") && e.contains("SSL_CERT_FILE"), "{e}");

    // oci:// keeps plain HTTP for a loopback host: this registry refuses it.
    let plain =
        image_builder::store::StoreUrl::parse(&format!("oci://127.0.0.1:{}/ib/images", reg.port))
            .unwrap();
    let env = env_of(&[("SSL_CERT_FILE", ca)]);
    let err = Store::open_with_env(&plain, &env).err().expect("accepted");
    assert!(matches!(err, StoreError::Http { status: 400, .. }), "{err}");
}

/// What the token server was asked: the query and the Authorization header.
type Asked = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A token server (the distribution token-auth spec) on 127.0.0.1: it checks Basic
/// credentials, and for the scope asked for issues a JWT (RS256, the signing certificate
/// in `x5c`) signed by `openssl dgst`.
struct TokenServer {
    port: u16,
    asked: Asked,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    fn start(pki: &Path, user: &str, password: &str) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let asked: Asked = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let (a, s, pki) = (asked.clone(), stop.clone(), pki.to_path_buf());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    answer(conn, &pki, &want, &a);
                }
            }
        });
        TokenServer {
            port,
            asked,
            stop,
            thread: Some(thread),
        }
    }

    fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const ISSUER: &str = "image-builder-test-issuer";
const SERVICE: &str = "image-builder-test-registry";

fn answer(conn: TcpStream, pki: &Path, want: &str, asked: &Asked) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut authorization = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_string());
            }
        }
    }
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    asked
        .lock()
        .unwrap()
        .push((query.to_string(), authorization.clone()));
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| percent_decode(v))
    };
    let (status, body) = if authorization.as_deref() != Some(want) {
        (
            "401 Unauthorized",
            r#"{"details":"wrong user name or password"}"#.to_string(),
        )
    } else {
        let access: Vec<serde_json::Value> = param("scope")
            .iter()
            .filter_map(|s| {
                let mut parts = s.splitn(3, ':');
                let (t, n, a) = (parts.next()?, parts.next()?, parts.next()?);
                Some(serde_json::json!({"type": t, "name": n, "actions": a.split(',').collect::<Vec<_>>()}))
            })
            .collect();
        let token = jwt(pki, param("service").as_deref().unwrap_or(""), access);
        ("200 OK", serde_json::json!({ "token": token }).to_string())
    };
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A JWT for `access`, signed with `pki/token.key` (RS256), `pki/token.der` in `x5c`.
fn jwt(pki: &Path, audience: &str, access: Vec<serde_json::Value>) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let cert = std::fs::read(pki.join("token.der")).unwrap();
    let header = serde_json::json!({
        "typ": "JWT",
        "alg": "RS256",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(cert)],
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": "alice",
        "aud": audience,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{}", std::process::id()),
        "access": access,
    });
    let input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let mut child = Command::new(OPENSSL)
        .args(["dgst", "-sha256", "-binary", "-sign"])
        .arg(pki.join("token.key"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "openssl dgst -sign failed");
    format!("{input}.{}", b64.encode(o.stdout))
}

#[test]
fn bearer_tokens_from_a_token_server_with_credentials_from_the_environment() {
    if no_registry() || no_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pki: PathBuf = tmp.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    openssl(
        &pki,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "token.key",
            "-out",
            "token.pem",
            "-days",
            "2",
            "-subj",
            "/CN=image-builder test token signer",
        ],
    );
    openssl(
        &pki,
        &[
            "x509",
            "-in",
            "token.pem",
            "-outform",
            "DER",
            "-out",
            "token.der",
        ],
    );
    let (user, password) = ("alice", "tok-pw-5e21");
    let tokens = TokenServer::start(&pki, user, password);
    let reg = Registry::start_with(
        tmp.path(),
        &format!(
            "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    \
             rootcertbundle: {}\n",
            tokens.realm(),
            pki.join("token.pem").display()
        ),
    );
    let creds = [
        ("IMAGE_BUILDER_STORE_USERNAME", user.to_string()),
        ("IMAGE_BUILDER_STORE_PASSWORD", password.to_string()),
    ];
    let store = Store::open_with_env(&reg.url("ib/images"), &env_of(&creds))
        .unwrap_or_else(|e| panic!("{e}\nregistry log:\n{}", reg.log()));
    let f = write_file(tmp.path(), "disk.raw", b"token image", media::DISK_RAW);
    let digest = store
        .push_artifact("v1", media::IMAGE, &[f], BTreeMap::new())
        .unwrap_or_else(|e| panic!("{e}\nregistry log:\n{}", reg.log()));
    {
        let asked = tokens.asked.lock().unwrap();
        assert_eq!(asked.len(), 1, "{asked:?}");
        let (query, authorization) = &asked[0];
        assert!(
            query.contains("scope=repository%3Aib%2Fimages%3Apull%2Cpush"),
            "{query}"
        );
        assert!(query.contains(&format!("service={SERVICE}")), "{query}");
        let basic = authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Basic "));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.expect("no Basic credentials"))
            .unwrap();
        assert_eq!(decoded, format!("{user}:{password}").as_bytes());
    }

    // The command line, credentials from its environment: pulls, and never shows them.
    let reference = format!("{}:v1", reg.address("ib/images"));
    let o = cli_pull(
        &reference,
        &tmp.path().join("env"),
        &[
            ("IMAGE_BUILDER_STORE_USERNAME", user),
            ("IMAGE_BUILDER_STORE_PASSWORD", password),
        ],
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(e.contains(&digest), "{e}");
    assert!(!e.contains(password), "the password was printed: {e}");
    // -vv traces, but not the HTTP client's dump of the bytes it sends: that holds the
    // Authorization headers (the credentials in base64, the token).
    assert!(e.contains("store request"), "{e}");
    assert!(!e.contains("ureq_proto::util"), "the wire dump was logged");
    assert_eq!(
        std::fs::read(tmp.path().join("env/disk.raw")).unwrap(),
        b"token image"
    );
    assert_eq!(tokens.asked.lock().unwrap().len(), 2);

    // Wrong credentials: the token server refuses them, and the error says where.
    let o = cli_pull(
        &reference,
        &tmp.path().join("wrong"),
        &[
            ("IMAGE_BUILDER_STORE_USERNAME", user),
            ("IMAGE_BUILDER_STORE_PASSWORD", "wrong-4b7e"),
        ],
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("token realm") && e.contains("HTTP 401"), "{e}");
    assert!(!e.contains("wrong-4b7e") && !e.contains(password), "{e}");
    let err = Store::open_with_env(&reg.url("ib/images"), &env_of(&[]))
        .err()
        .expect("opened without credentials");
    assert!(matches!(err, StoreError::Http { status: 401, .. }), "{err}");

    // A token the registry does not trust (signed, but for another service) is refused.
    let forged = jwt(&pki, "another-service", Vec::new());
    let resp = ureq::get(format!("http://127.0.0.1:{}/v2/", reg.port))
        .header("Authorization", format!("Bearer {forged}"))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}
