//! A real S3-compatible server for tests: `moto_server` (PyPI `moto[server]` 5.2.5 or newer,
//! installed by `.ci/run`; 5.2.1 answers CompleteMultipartUpload with a root element the AWS
//! SDK rejects). It binds port 0 and the port is read from its own startup line, so parallel
//! tests can never end up talking to each other's server.

#![allow(dead_code)] // Each test binary uses its own subset.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A `moto_server` on 127.0.0.1, stopped on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Self {
        let mut child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("moto_server must be installed: pip install 'moto[server]>=5.2.5'");
        // Werkzeug logs its address, then one line per request: read stderr for the server's
        // whole life so it never blocks on a full pipe.
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (port_tx, port_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut announced = false;
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                if announced {
                    continue;
                }
                if let Some(port) = line
                    .split_once("Running on http://127.0.0.1:")
                    .and_then(|(_, rest)| rest.trim().parse::<u16>().ok())
                {
                    announced = true;
                    let _ = port_tx.send(Ok(port));
                } else {
                    let _ = port_tx.send(Err(line));
                }
            }
        });
        let mut seen = String::new();
        let port = loop {
            match port_rx.recv_timeout(START_TIMEOUT) {
                Ok(Ok(port)) => break port,
                Ok(Err(line)) => {
                    seen.push_str(&line);
                    seen.push('\n');
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("moto_server did not announce its port:\n{seen}");
                }
            }
        };
        Self { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One HTTP/1.1 request; returns the status code and the body. moto does not check
    /// signatures, but answers 403 to an anonymous GET of an object: the `Authorization`
    /// header names the test's access key with a dummy signature.
    pub fn request(&self, method: &str, path: &str) -> (u16, Vec<u8>) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/\
             aws4_request, SignedHeaders=host, Signature=00\r\nConnection: close\r\n\r\n",
            self.port
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let split = find(&response, b"\r\n\r\n").expect("an HTTP response head");
        let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("an HTTP status line");
        let body = response[split + 4..].to_vec();
        if head.contains("transfer-encoding: chunked") {
            (status, dechunk(&body))
        } else {
            (status, body)
        }
    }

    pub fn create_bucket(&self, bucket: &str) {
        let (status, body) = self.request("PUT", &format!("/{bucket}"));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }

    /// Every object key in `bucket`.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let (status, body) = self.request("GET", &format!("/{bucket}?list-type=2"));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let listing = String::from_utf8(body).unwrap();
        listing
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_owned()))
            .collect()
    }

    pub fn object(&self, bucket: &str, key: &str) -> Vec<u8> {
        let (status, body) = self.request("GET", &format!("/{bucket}/{key}"));
        assert_eq!(status, 200, "GET {key}");
        body
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = find(body, b"\r\n").expect("a chunk size line");
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("a hexadecimal chunk size");
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&body[start..start + size]);
        body = &body[start + size + 2..];
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
