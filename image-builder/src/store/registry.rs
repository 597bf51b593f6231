//! A registry over the OCI distribution API (distribution-spec `spec.md`), with ureq as
//! the HTTP client: `GET /v2/` to probe and authenticate, `HEAD`/`GET
//! /v2/NAME/blobs/DIGEST`, a monolithic upload of a file (`POST /v2/NAME/blobs/uploads/`,
//! then `PUT LOCATION?digest=DIGEST` with the bytes), a chunked upload of a blob still being
//! written (a `PATCH` per chunk as it comes, then the `PUT` with the digest, known at the
//! end), and `GET`/`PUT /v2/NAME/manifests/REFERENCE`.
//!
//! Loopback hosts (`localhost`, `127.0.0.0/8`, `[::1]`) are spoken to over plain HTTP
//! unless the address is `oci+https://`, every other host over HTTPS, checked against the
//! roots `tls` chooses (`SSL_CERT_FILE`, `SSL_CERT_DIR`). Authentication follows the registry's
//! `WWW-Authenticate` challenge: `Basic` sends the credentials, `Bearer` trades them
//! (or nothing, for anonymous access) at the token realm for a token scoped to
//! `repository:NAME:pull,push` (the distribution token-auth spec).

use std::io::{Read, Write};
use std::sync::Mutex;
use std::time::Duration;

use ureq::http::{Request, Response};
use ureq::tls::TlsConfig;
use ureq::{Agent, Body, SendBody};

use super::auth::{self, Credentials};
use super::stream::Follower;
use super::{tls, Backend, StoreError, StoreUrl, MANIFEST_MEDIA_TYPE};

/// The size of each `PATCH` of a chunked upload: large enough for few requests and above
/// the least chunk some registries take (5 MiB, as object stores' multipart uploads),
/// small enough to hold in memory.
const UPLOAD_CHUNK: usize = 16 << 20;

pub(super) struct Registry {
    agent: Agent,
    /// `http[s]://HOST[:PORT]`
    base: String,
    repo: String,
    /// `oci[+https]://HOST[:PORT]/REPO`, for messages.
    name: String,
    /// The Authorization header value the challenge asked for, once settled.
    authorization: Mutex<Option<String>>,
}

/// `localhost`, `[::1]`, or an IPv4 address in 127.0.0.0/8 (a host name that merely
/// starts with `127.` is not one).
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

impl Registry {
    pub(super) fn open(
        url: &StoreUrl,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Registry, StoreError> {
        let StoreUrl::Registry {
            host,
            port,
            repo,
            https,
        } = url
        else {
            return Err(StoreError::BadUrl {
                url: url.to_string(),
                why: "not a registry".into(),
            });
        };
        let hostport = match port {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let tls = *https || !is_loopback(host);
        let mut config = Agent::config_builder();
        if tls {
            config = config.tls_config(
                TlsConfig::builder()
                    .root_certs(tls::root_certs(env)?)
                    .build(),
            );
        }
        let agent: Agent = config
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(300)))
            .user_agent(concat!("image-builder/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let registry = Registry {
            agent,
            base: format!("{}://{hostport}", if tls { "https" } else { "http" }),
            repo: repo.to_string(),
            name: url.to_string(),
            authorization: Mutex::new(None),
        };
        let creds = auth::lookup_with(&hostport, env)?;
        let probe = registry.request("GET", "/v2/", &[], SendBody::none(), "the API probe")?;
        match probe.status().as_u16() {
            200 => {}
            401 => {
                let challenge = probe
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let header = registry.answer(&challenge, creds.as_ref())?;
                *registry
                    .authorization
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(header);
                let again =
                    registry.request("GET", "/v2/", &[], SendBody::none(), "the API probe")?;
                registry.expect(again, 200, "the API probe (authenticated)")?;
            }
            _ => return Err(registry.status_error("the API probe", probe)),
        }
        Ok(registry)
    }

    /// The Authorization header answering a `WWW-Authenticate` challenge.
    fn answer(&self, challenge: &str, creds: Option<&Credentials>) -> Result<String, StoreError> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        let no_creds = || StoreError::Protocol {
            store: self.name.clone(),
            what: "authentication".into(),
            reason: format!(
                "the registry asks for credentials; set {} and {}, or log in with an \
                 auth file (see docs/scaling.md)",
                auth::USER_ENV,
                auth::PASSWORD_ENV
            ),
        };
        if scheme.eq_ignore_ascii_case("basic") {
            return creds.map(Credentials::basic).ok_or_else(no_creds);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(StoreError::Protocol {
                store: self.name.clone(),
                what: "authentication".into(),
                reason: format!("unsupported challenge scheme {scheme:?}"),
            });
        }
        let param = |name: &str| challenge_param(params, name);
        let realm = param("realm").ok_or_else(|| StoreError::Protocol {
            store: self.name.clone(),
            what: "authentication".into(),
            reason: "the Bearer challenge has no realm".into(),
        })?;
        let mut url = format!(
            "{realm}{}scope={}",
            if realm.contains('?') { '&' } else { '?' },
            encode(&format!("repository:{}:pull,push", self.repo))
        );
        if let Some(service) = param("service") {
            url.push_str(&format!("&service={}", encode(&service)));
        }
        let mut req = Request::get(&url);
        if let Some(c) = creds {
            req = req.header("Authorization", c.basic());
        }
        let req = req
            .body(SendBody::none())
            .map_err(|e| self.protocol("the token request", e))?;
        let resp = self
            .agent
            .run(req)
            .map_err(|e| self.unreachable("the token realm", e))?;
        let mut resp = self.expect(resp, 200, "the token realm")?;
        let text = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .map_err(|e| self.protocol("the token realm's answer", e))?;
        let body: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| self.protocol("the token realm's answer", e))?;
        let token = body["token"]
            .as_str()
            .or_else(|| body["access_token"].as_str())
            .ok_or_else(|| self.protocol("the token realm's answer", "no token"))?;
        Ok(format!("Bearer {token}"))
    }

    fn protocol(&self, what: &str, reason: impl std::fmt::Display) -> StoreError {
        StoreError::Protocol {
            store: self.name.clone(),
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }

    fn unreachable(&self, what: &str, e: ureq::Error) -> StoreError {
        // A TLS failure comes as itself or, from the handshake, inside an I/O error.
        let tls_error = match &e {
            ureq::Error::Rustls(t) => Some(t),
            ureq::Error::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
            _ => None,
        };
        let reason = match tls_error {
            Some(t @ rustls::Error::InvalidCertificate(_)) => format!(
                "{what}: the registry's TLS certificate is refused: {t} (for a registry \
                 whose certificate a private CA signed, set {} to a PEM file that holds \
                 the CA; see docs/scaling.md)",
                tls::CERT_FILE_ENV
            ),
            Some(t) => format!("{what}: TLS: {t}"),
            None => format!("{what}: {e}"),
        };
        StoreError::Unreachable {
            store: self.name.clone(),
            reason,
        }
    }

    /// `resp` when its status is `want`, otherwise the error it makes.
    fn expect(
        &self,
        resp: Response<Body>,
        want: u16,
        what: &str,
    ) -> Result<Response<Body>, StoreError> {
        if resp.status().as_u16() == want {
            Ok(resp)
        } else {
            Err(self.status_error(what, resp))
        }
    }

    fn status_error(&self, what: &str, mut resp: Response<Body>) -> StoreError {
        let body = resp
            .body_mut()
            .with_config()
            .limit(4096)
            .read_to_string()
            .unwrap_or_default();
        StoreError::Http {
            store: self.name.clone(),
            what: what.to_string(),
            status: resp.status().as_u16(),
            body,
        }
    }

    /// Opens an upload (`POST /v2/NAME/blobs/uploads/`); its `Location`.
    fn start_upload(&self, what: &str) -> Result<String, StoreError> {
        let path = format!("/v2/{}/blobs/uploads/", self.repo);
        let start = self.request("POST", &path, &[], SendBody::none(), what)?;
        self.location(&self.expect(start, 202, what)?, what)
    }

    /// The `Location` an upload answer names, where the upload goes on.
    fn location(&self, resp: &Response<Body>, what: &str) -> Result<String, StoreError> {
        resp.headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| self.protocol(what, "the upload answer has no Location"))
    }

    /// One request; `path` is absolute (`/v2/...`) or a full URL (an upload location).
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: SendBody<'_>,
        what: &str,
    ) -> Result<Response<Body>, StoreError> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut req = Request::builder().method(method).uri(&url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let authorization = self
            .authorization
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(a) = authorization {
            req = req.header("Authorization", a);
        }
        let req = req.body(body).map_err(|e| self.protocol(what, e))?;
        tracing::trace!(method, url, "store request");
        self.agent.run(req).map_err(|e| self.unreachable(what, e))
    }
}

/// An upload location with the blob's digest added to its query, to close the upload.
fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={}", encode(digest))
}

/// A parameter of a challenge: `realm="https://auth",service="registry"`.
fn challenge_param(params: &str, name: &str) -> Option<String> {
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().trim_start_matches(',').trim();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if key.eq_ignore_ascii_case(name) {
            return Some(value.to_string());
        }
        rest = next.trim_start_matches(',').trim();
    }
    None
}

/// Percent-encoding of a query value (RFC 3986 unreserved characters kept).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Backend for Registry {
    fn has_blob(&self, digest: &str) -> Result<bool, StoreError> {
        let path = format!("/v2/{}/blobs/{digest}", self.repo);
        let what = format!("HEAD blob {digest}");
        let resp = self.request("HEAD", &path, &[], SendBody::none(), &what)?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.status_error(&what, resp)),
        }
    }

    fn put_blob(&self, digest: &str, size: u64, body: &mut dyn Read) -> Result<(), StoreError> {
        let what = format!("upload of blob {digest}");
        let location = self.start_upload(&what)?;
        let headers = [
            ("Content-Type", "application/octet-stream".to_string()),
            ("Content-Length", size.to_string()),
        ];
        let target = with_digest(&location, digest);
        let done = self.request("PUT", &target, &headers, SendBody::from_reader(body), &what)?;
        self.expect(done, 201, &what).map(drop)
    }

    fn streams(&self) -> bool {
        true
    }

    /// distribution-spec `spec.md`, "Pushing a blob in chunks": `POST` opens the upload,
    /// each chunk is a `PATCH` to the latest `Location` with `Content-Range: START-END`
    /// (inclusive, no unit) and `Content-Length`, answered 202 with the next `Location`;
    /// a `PUT` to it with `?digest=` and no body closes the upload, answered 201.
    fn put_streamed(&self, body: &mut Follower<'_>) -> Result<(), StoreError> {
        let what = "upload of a blob being written".to_string();
        let mut location = self.start_upload(&what)?;
        let mut chunk = Vec::with_capacity(UPLOAD_CHUNK);
        let mut start = 0u64;
        loop {
            chunk.clear();
            // A whole chunk, or what is left at the end (the follower waits for the writer).
            let n = body
                .by_ref()
                .take(UPLOAD_CHUNK as u64)
                .read_to_end(&mut chunk)
                .map_err(|e| self.protocol(&what, e))?;
            if n == 0 {
                break;
            }
            let end = start + n as u64 - 1;
            let headers = [
                ("Content-Type", "application/octet-stream".to_string()),
                ("Content-Range", format!("{start}-{end}")),
                ("Content-Length", n.to_string()),
            ];
            let sent = self.request(
                "PATCH",
                &location,
                &headers,
                SendBody::from_reader(&mut &chunk[..]),
                &what,
            )?;
            location = self.location(&self.expect(sent, 202, &what)?, &what)?;
            start = end + 1;
        }
        let (digest, _) = body.digest();
        let what = format!("upload of blob {digest}");
        let headers = [("Content-Length", "0".to_string())];
        let target = with_digest(&location, &digest);
        let done = self.request("PUT", &target, &headers, SendBody::none(), &what)?;
        self.expect(done, 201, &what).map(drop)
    }

    fn get_blob(&self, digest: &str, out: &mut dyn Write) -> Result<(), StoreError> {
        let what = format!("GET blob {digest}");
        let path = format!("/v2/{}/blobs/{digest}", self.repo);
        let resp = self.request("GET", &path, &[], SendBody::none(), &what)?;
        let mut resp = self.expect(resp, 200, &what)?;
        let mut reader = resp.body_mut().as_reader();
        std::io::copy(&mut reader, out).map_err(|e| self.protocol(&what, e))?;
        Ok(())
    }

    fn put_manifest(&self, tag: &str, _digest: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let what = format!("PUT manifest {tag}");
        let path = format!("/v2/{}/manifests/{tag}", self.repo);
        let headers = [("Content-Type", MANIFEST_MEDIA_TYPE.to_string())];
        let resp = self.request(
            "PUT",
            &path,
            &headers,
            SendBody::from_reader(&mut &bytes[..]),
            &what,
        );
        self.expect(resp?, 201, &what).map(drop)
    }

    fn get_manifest(&self, reference: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let what = format!("GET manifest {reference}");
        let path = format!("/v2/{}/manifests/{reference}", self.repo);
        let headers = [("Accept", MANIFEST_MEDIA_TYPE.to_string())];
        let mut resp = self.request("GET", &path, &headers, SendBody::none(), &what)?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => return Err(self.status_error(&what, resp)),
        }
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(4 << 20)
            .read_to_vec()
            .map_err(|e| self.protocol(&what, e))?;
        Ok(Some(bytes))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_loopback_addresses_are_loopback() {
        for host in ["localhost", "[::1]", "127.0.0.1", "127.1.2.3"] {
            assert!(super::is_loopback(host), "{host}");
        }
        for host in [
            "127.evil.example",
            "127.0.0.1.example",
            "128.0.0.1",
            "::1",
            "10.0.0.1",
        ] {
            assert!(!super::is_loopback(host), "{host}");
        }
    }

    use super::*;

    #[test]
    fn challenge_params() {
        let p = r#"realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#;
        assert_eq!(
            challenge_param(p, "realm").as_deref(),
            Some("https://auth.example/token")
        );
        assert_eq!(
            challenge_param(p, "service").as_deref(),
            Some("registry.example")
        );
        assert_eq!(
            challenge_param(p, "scope").as_deref(),
            Some("repository:a:pull")
        );
        assert_eq!(
            challenge_param("realm=x, service=y", "service").as_deref(),
            Some("y")
        );
        assert_eq!(challenge_param(p, "error"), None);
    }

    #[test]
    fn query_encoding_and_loopback() {
        assert_eq!(
            encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
        assert!(is_loopback("127.0.0.1") && is_loopback("localhost"));
        assert!(!is_loopback("registry.example"));
    }
}
