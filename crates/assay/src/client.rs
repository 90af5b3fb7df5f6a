//! A small blocking HTTP client for the node's API.

use crate::commands::Exit;
use anyhow::{anyhow, Context as _};
use std::io::Read as _;
use std::time::Duration;

/// Largest response body the CLI reads.
const RESPONSE_BYTES_MAX: u64 = 256 << 20;

/// Talks to one node.
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client for the node at `base` (e.g. `http://127.0.0.1:9470`).
    pub fn new(base: &str) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .build();
        Client {
            base: base.trim_end_matches('/').to_string(),
            agent,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn finish(
        &self,
        result: Result<ureq::Response, ureq::Error>,
        what: &str,
    ) -> anyhow::Result<Vec<u8>> {
        match result {
            Ok(resp) => {
                let mut body = Vec::new();
                resp.into_reader()
                    .take(RESPONSE_BYTES_MAX)
                    .read_to_end(&mut body)
                    .with_context(|| format!("reading {what}"))?;
                Ok(body)
            }
            Err(ureq::Error::Status(code, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                let msg = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                    .unwrap_or(text);
                let exit = if (400..500).contains(&code) { 4 } else { 3 };
                Err(anyhow!(Exit(exit))
                    .context(format!("{what}: the server answered {code}: {msg}")))
            }
            Err(e) => {
                Err(anyhow!(Exit(3)).context(format!("{what}: cannot reach {}: {e}", self.base)))
            }
        }
    }

    /// GET a path; the body on 2xx.
    pub fn get(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        self.finish(
            self.agent.get(&self.url(path)).call(),
            &format!("GET {path}"),
        )
    }

    /// GET a path and parse JSON.
    pub fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let body = self.get(path)?;
        serde_json::from_slice(&body).with_context(|| format!("GET {path}: the answer is not JSON"))
    }

    /// POST a body; the JSON answer on 2xx.
    pub fn post_json(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> anyhow::Result<serde_json::Value> {
        let req = self
            .agent
            .post(&self.url(path))
            .set("Content-Type", content_type);
        let body = self.finish(req.send_bytes(body), &format!("POST {path}"))?;
        serde_json::from_slice(&body)
            .with_context(|| format!("POST {path}: the answer is not JSON"))
    }
}

/// Percent-encodes a query parameter value.
pub fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
