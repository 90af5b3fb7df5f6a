//! What the end-to-end test binaries share: a node process on 127.0.0.1 and HTTP helpers.
#![allow(dead_code)] // each test binary uses a different part

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_assay");

pub struct NodeProc {
    pub child: Child,
    pub url: String,
}

impl NodeProc {
    pub fn start(dir: &Path, extra: &[&str]) -> NodeProc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("node.log"))
            .unwrap();
        let mut child = Command::new(BIN)
            .args(["--json", "serve", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("starting assay serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("node printed its URL in time");
        let info: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("startup line {line:?}: {e}"));
        NodeProc {
            child,
            url: info["url"].as_str().unwrap().to_string(),
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "node exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "node did not stop within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        response(ureq::get(&format!("{}{path}", self.url)).call())
    }

    pub fn get_json(&self, path: &str) -> Value {
        let (code, body) = self.get(path);
        assert_eq!(code, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        let r = ureq::post(&format!("{}{path}", self.url))
            .set("Content-Type", content_type)
            .send_bytes(body);
        let (code, bytes) = response(r);
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Sends a request head announcing `len` body bytes, then reads the answer.
    pub fn post_head_only(&self, path: &str, content_type: &str, len: u64) -> (u16, String) {
        use std::io::Write;
        let addr = self.url.trim_start_matches("http://");
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer).to_string();
        let code = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (code, text)
    }

    pub fn query(&self, q: &str) -> Value {
        self.query_at(q, None)
    }

    pub fn query_at(&self, q: &str, at_ms: Option<i64>) -> Value {
        let time = at_ms
            .map(|t| format!("&time={}", t as f64 / 1000.0))
            .unwrap_or_default();
        let v = self.get_json(&format!("/api/v1/query?query={}{time}", enc(q)));
        assert_eq!(v["status"], "success");
        v["data"]["result"].clone()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn response(r: Result<ureq::Response, ureq::Error>) -> (u16, Vec<u8>) {
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let code = resp.status();
    let mut body = Vec::new();
    resp.into_reader().read_to_end(&mut body).unwrap();
    (code, body)
}

pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
