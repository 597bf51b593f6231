//! EC2 instance metadata (IMDS): IMDSv2 first (`PUT /latest/api/token`, then every
//! request carries `X-aws-ec2-metadata-token`), falling back to IMDSv1 when the token
//! call is refused. An endpoint that does not answer at all means "not on EC2". The
//! token is a credential: it is never logged.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::{json, Map};

use super::{cloudconfig, Found, SourceError};

const NAME: &str = "ec2";
const TOKEN_TTL: &str = "21600";

struct Http {
    host: String,
    port: u16,
    timeout: Duration,
}

struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl Http {
    fn parse(endpoint: &str, timeout: Duration) -> Result<Http, SourceError> {
        let rest = endpoint.strip_prefix("http://").ok_or_else(|| {
            SourceError::malformed(
                NAME,
                format!("endpoint {endpoint:?} must start with http://"),
            )
        })?;
        let hostport = rest.trim_end_matches('/');
        let bad_port =
            || SourceError::malformed(NAME, format!("bad port in endpoint {endpoint:?}"));
        // An IPv6 literal is bracketed (RFC 3986 3.2.2), as in EC2's IPv6 endpoint
        // `http://[fd00:ec2::254]`; its colons are not a port separator.
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| {
                SourceError::malformed(NAME, format!("unclosed `[` in endpoint {endpoint:?}"))
            })?;
            let port = match after {
                "" => 80,
                p => p
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(bad_port)?,
            };
            (h.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad_port())?),
                None => (hostport.to_string(), 80),
            }
        };
        Ok(Http {
            host,
            port,
            timeout,
        })
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Reply> {
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
        let mut s = TcpStream::connect_timeout(&addr, self.timeout)?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        // HTTP/1.0: the server closes after one reply and never sends chunked bodies.
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if method == "PUT" {
            req.push_str("Content-Length: 0\r\n");
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())?;
        let mut raw = Vec::new();
        s.take(16 << 20).read_to_end(&mut raw)?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "no end of headers")
            })?;
        let head = String::from_utf8_lossy(&raw[..split]);
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "bad status line")
            })?;
        Ok(Reply {
            status,
            body: raw[split + 4..].to_vec(),
        })
    }
}

pub fn read(endpoint: &str, timeout_ms: u64) -> Result<Option<Found>, SourceError> {
    let http = Http::parse(endpoint, Duration::from_millis(timeout_ms))?;
    let token = match http.request(
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL)],
    ) {
        Err(e) => {
            tracing::debug!("source ec2: {endpoint} does not answer ({e})");
            return Ok(None);
        }
        Ok(r) if r.status == 200 => {
            tracing::info!("source ec2: IMDSv2 session token obtained");
            Some(String::from_utf8_lossy(&r.body).trim().to_string())
        }
        Ok(r) => {
            tracing::info!(
                "source ec2: token request answered {}; falling back to IMDSv1",
                r.status
            );
            None
        }
    };
    let get_bytes = |path: &str| -> Result<Option<Vec<u8>>, SourceError> {
        let headers: Vec<(&str, &str)> = token
            .as_deref()
            .map(|t| vec![("X-aws-ec2-metadata-token", t)])
            .unwrap_or_default();
        let r = http
            .request("GET", path, &headers)
            .map_err(|e| SourceError::Unavailable {
                source_name: NAME,
                message: format!("GET {path}: {e}"),
            })?;
        match r.status {
            200 => Ok(Some(r.body)),
            404 => Ok(None),
            401 => Err(SourceError::Unavailable {
                source_name: NAME,
                message: format!("GET {path}: 401 unauthorized (the service requires IMDSv2 and the token was refused)"),
            }),
            s => Err(SourceError::Unavailable { source_name: NAME, message: format!("GET {path}: HTTP {s}") }),
        }
    };
    let get = |path: &str| -> Result<Option<String>, SourceError> {
        get_bytes(path).map(|o| o.map(|b| String::from_utf8_lossy(&b).into_owned()))
    };
    let instance_id = get("/latest/meta-data/instance-id")?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| SourceError::malformed(NAME, "meta-data has no instance-id"))?;
    let mut desired = Map::new();
    if let Some(h) = get("/latest/meta-data/local-hostname")? {
        let h = h.trim();
        if !h.is_empty() {
            desired.insert("hostname".into(), json!(h.split('.').next().unwrap_or(h)));
        }
    }
    let mut keys = Vec::new();
    if let Some(list) = get("/latest/meta-data/public-keys/")? {
        for line in list.lines() {
            let Some((idx, _)) = line.split_once('=') else {
                continue;
            };
            if idx.is_empty() || !idx.bytes().all(|b| b.is_ascii_digit()) {
                return Err(SourceError::malformed(
                    NAME,
                    format!("public-keys entry {line:?} is not INDEX=NAME"),
                ));
            }
            if let Some(k) = get(&format!("/latest/meta-data/public-keys/{idx}/openssh-key"))? {
                keys.push(k.trim().to_string());
            }
        }
    }
    let ud = get_bytes("/latest/user-data")?;
    let (desired, warnings) = cloudconfig::combine(NAME, ud.as_deref(), &keys, desired)?;
    Ok(Some(Found {
        instance_id: Some(instance_id),
        desired,
        warnings,
    }))
}
