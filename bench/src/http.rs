//! A minimal HTTP/1.1 client over one keep-alive TCP connection.
//!
//! Why not hyper: the load generator shares two cores with the server it measures, so the
//! client does the least work possible — one buffered write per request, one parse of the
//! status line and headers with `httparse`, no per-request allocation beyond the reply body.

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response header block accepted, bytes (Assay's replies are far smaller).
const RESPONSE_HEAD_BYTES_MAX: usize = 64 * 1024;
/// Largest response body accepted, bytes: query results of the marker series are tiny.
const RESPONSE_BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Headers parsed per response.
const RESPONSE_HEADERS_MAX: usize = 32;

/// Where a node listens: `host:port` taken from an `http://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `host:port`, also sent as the Host header.
    pub authority: String,
}

impl Target {
    /// Parses `http://host:port[/]`; HTTPS is not supported (benchmarks run on loopback).
    pub fn parse(url: &str) -> Result<Target> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            anyhow!(
                "URL `{url}` must start with http:// (the benchmark client speaks plain HTTP/1.1)"
            )
        })?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') || !authority.contains(':') {
            bail!("URL `{url}` must be http://HOST:PORT with no path, e.g. http://127.0.0.1:9470");
        }
        Ok(Target {
            authority: authority.to_string(),
        })
    }
}

/// A response: status and body.
#[derive(Debug)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Body bytes (de-chunked).
    pub body: Vec<u8>,
}

/// One keep-alive connection.
pub struct Conn {
    target: Target,
    stream: TcpStream,
    /// Bytes read but not yet consumed.
    inbuf: Vec<u8>,
    /// Request head plus body, reused across requests.
    outbuf: Vec<u8>,
}

impl Conn {
    /// Opens a connection with Nagle off (requests are written in one piece anyway).
    pub async fn connect(target: &Target) -> Result<Conn> {
        let stream = TcpStream::connect(&target.authority)
            .await
            .with_context(|| format!("connecting to {}", target.authority))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            target: target.clone(),
            stream,
            inbuf: Vec::with_capacity(16 * 1024),
            outbuf: Vec::new(),
        })
    }

    /// Reopens the connection after an error.
    pub async fn reconnect(&mut self) -> Result<()> {
        *self = Conn::connect(&self.target).await?;
        Ok(())
    }

    /// POSTs a JSON body and reads the whole response.
    pub async fn post_json(&mut self, path: &str, body: &[u8]) -> Result<Response> {
        self.outbuf.clear();
        self.outbuf.extend_from_slice(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                self.target.authority,
                body.len()
            )
            .as_bytes(),
        );
        self.outbuf.extend_from_slice(body);
        self.stream.write_all(&self.outbuf).await?;
        self.read_response().await
    }

    /// POSTs `body` with extra header lines (each ending in CRLF) and reads the response.
    pub async fn post_with(&mut self, path: &str, headers: &str, body: &[u8]) -> Result<Response> {
        self.outbuf.clear();
        self.outbuf.extend_from_slice(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\n{headers}Content-Length: {}\r\n\r\n",
                self.target.authority,
                body.len()
            )
            .as_bytes(),
        );
        self.outbuf.extend_from_slice(body);
        self.stream.write_all(&self.outbuf).await?;
        self.read_response().await
    }

    /// GETs `path_and_query` and reads the whole response.
    pub async fn get(&mut self, path_and_query: &str) -> Result<Response> {
        let head = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\n\r\n",
            self.target.authority
        );
        self.stream.write_all(head.as_bytes()).await?;
        self.read_response().await
    }

    async fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server closed the connection mid-response");
        }
        self.inbuf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn read_response(&mut self) -> Result<Response> {
        let (status, head_len, framing) = loop {
            let mut headers = [httparse::EMPTY_HEADER; RESPONSE_HEADERS_MAX];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.inbuf)? {
                httparse::Status::Complete(n) => {
                    let status = resp.code.unwrap_or(0);
                    // 204 and 304 have no body, and Go's net/http sends no framing for them.
                    if status == 204 || status == 304 {
                        break (status, n, Framing::Length(0));
                    }
                    break (status, n, Framing::of(resp.headers)?);
                }
                httparse::Status::Partial => {
                    if self.inbuf.len() > RESPONSE_HEAD_BYTES_MAX {
                        bail!("response head exceeds {RESPONSE_HEAD_BYTES_MAX} bytes");
                    }
                    self.fill().await?;
                }
            }
        };
        self.inbuf.drain(..head_len);
        let body = match framing {
            Framing::Length(n) => {
                if n > RESPONSE_BODY_BYTES_MAX {
                    bail!("response body of {n} bytes exceeds {RESPONSE_BODY_BYTES_MAX}");
                }
                while self.inbuf.len() < n {
                    self.fill().await?;
                }
                self.inbuf.drain(..n).collect()
            }
            Framing::Chunked => self.read_chunked().await?,
        };
        Ok(Response { status, body })
    }

    async fn read_chunked(&mut self) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = self.inbuf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                self.fill().await?;
            };
            let size_text = std::str::from_utf8(&self.inbuf[..line_end])?;
            let size_hex = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .with_context(|| format!("bad chunk size `{size_text}`"))?;
            if body.len() + size > RESPONSE_BODY_BYTES_MAX {
                bail!("chunked response body exceeds {RESPONSE_BODY_BYTES_MAX} bytes");
            }
            // The chunk, then its CRLF (the last chunk is followed by an empty trailer line).
            while self.inbuf.len() < line_end + 2 + size + 2 {
                self.fill().await?;
            }
            body.extend_from_slice(&self.inbuf[line_end + 2..line_end + 2 + size]);
            self.inbuf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                return Ok(body);
            }
        }
    }
}

/// How a response body is delimited.
enum Framing {
    Length(usize),
    Chunked,
}

impl Framing {
    fn of(headers: &[httparse::Header<'_>]) -> Result<Framing> {
        for h in headers {
            if h.name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(h.value)?.trim().parse()?;
                return Ok(Framing::Length(n));
            }
            if h.name.eq_ignore_ascii_case("transfer-encoding")
                && h.value.eq_ignore_ascii_case(b"chunked")
            {
                return Ok(Framing::Chunked);
            }
        }
        // Every Assay reply is framed; an unframed one would need read-to-close.
        bail!("response has neither Content-Length nor chunked encoding")
    }
}

/// Percent-encodes a query-string value (RFC 3986 unreserved characters pass through).
pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_need_scheme_host_and_port() {
        assert_eq!(
            Target::parse("http://127.0.0.1:9470/").unwrap().authority,
            "127.0.0.1:9470"
        );
        assert!(Target::parse("https://127.0.0.1:9470").is_err());
        assert!(Target::parse("http://127.0.0.1").is_err());
        assert!(Target::parse("http://127.0.0.1:1/x").is_err());
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode_query_value(r#"m{run="a b"}"#),
            "m%7Brun%3D%22a%20b%22%7D"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reads_length_and_chunked_responses_on_one_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                .await
                .unwrap();
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(
                b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            )
            .await
            .unwrap();
        });
        let target = Target::parse(&format!("http://{addr}")).unwrap();
        let mut conn = Conn::connect(&target).await.unwrap();
        let r = conn.post_json("/v1/push", b"{}").await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        let r = conn.get("/healthz").await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (503, &b"abcde"[..]));
        server.await.unwrap();
    }
}
