//! Starting the real `sealmail serve` binary for end-to-end tests.
//!
//! Every listener binds port 0 and the test reads the ports the server reports on stderr
//! ("<NAME> listening on <addr>"). Picking a "free" port first and passing it in is a race: the
//! port is released before the server binds it, and a parallel test (or an outgoing connection)
//! can take it in between — then the test talks to someone else's server.

#![allow(dead_code)] // Each test binary uses its own subset of these helpers.

pub mod moto;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The listeners `sealmail serve` has, by the name it logs them under. The environment
/// variable that places each one is `SEALMAIL_<NAME>_LISTEN` with the name in upper case.
pub const LISTENERS: [&str; 8] = [
    "IMAP",
    "IMAPS",
    "POP3",
    "POP3S",
    "SMTP",
    "SUBMISSION",
    "SUBMISSIONS",
    "metrics",
];

/// How long the server may take to announce that it is running.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop may take after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The binary with `--data-dir`, ready for a subcommand.
pub fn sealmail(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sealmail"));
    command.arg("--data-dir").arg(data_dir);
    command
}

/// Add `address` with `password` to the registry in `data_dir` (created if missing), with the
/// cheapest Argon2id parameters: tests that log in many times or time a command must not pay
/// the production KDF cost on each login.
pub fn add_account_with_cheap_kdf(data_dir: &Path, address: &str, password: &str) {
    use sealmail_core::registry::{AccountOptions, KdfParams, Registry};
    let registry = Registry::open_or_create(data_dir).unwrap();
    let options = AccountOptions {
        quota: None,
        with_recovery_code: false,
        kdf: KdfParams {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        },
    };
    registry
        .add_account(address, Some(password), &options)
        .unwrap();
}

/// Run `command` to its end with `stdin` as its input, capturing stdout and stderr. A command
/// that fails before reading its input closes the pipe early; that is fine.
pub fn run(command: &mut Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sealmail");
    let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

/// The stdout of a command that must have succeeded; its stderr in the failure message.
pub fn ok(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "failed: {}\nstdout: {stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Options for one `sealmail serve` start.
pub struct Serve {
    command: Command,
    data_dir: PathBuf,
    config: Option<PathBuf>,
    listeners: Vec<&'static str>,
    secrets: Vec<String>,
}

impl Serve {
    /// Every listener on 127.0.0.1 with a port of the kernel's choosing.
    pub fn new(data_dir: &Path) -> Self {
        Self::with_command(sealmail(data_dir), data_dir)
    }

    /// Like [`Serve::new`], from a command that already names the binary, its `--data-dir`
    /// (the same `data_dir`) and any environment the test needs.
    pub fn with_command(command: Command, data_dir: &Path) -> Self {
        Self {
            command,
            data_dir: data_dir.to_owned(),
            config: None,
            listeners: LISTENERS.to_vec(),
            secrets: Vec::new(),
        }
    }

    /// Only these listeners; every other one is turned off.
    pub fn only(mut self, listeners: &[&'static str]) -> Self {
        for name in listeners {
            assert!(LISTENERS.contains(name), "no listener named {name}");
        }
        self.listeners = listeners.to_vec();
        self
    }

    pub fn config(mut self, path: &Path) -> Self {
        self.config = Some(path.to_owned());
        self
    }

    pub fn env(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(name, value);
        self
    }

    /// A string that must never appear in the server's log (a password, message content).
    pub fn never_logs(mut self, secret: &str) -> Self {
        self.secrets.push(secret.to_owned());
        self
    }

    pub fn start(mut self) -> Server {
        self.command.arg("serve");
        if let Some(config) = &self.config {
            self.command.arg("--config").arg(config);
        }
        for name in LISTENERS {
            let value = if self.listeners.contains(&name) {
                "127.0.0.1:0"
            } else {
                "off"
            };
            self.command.env(
                format!("SEALMAIL_{}_LISTEN", name.to_ascii_uppercase()),
                value,
            );
        }
        let mut child = self
            .command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sealmail serve");
        // One thread reads stderr for the server's whole life, so the server never blocks on a
        // full pipe; it hands every line over and keeps the ones that leak a secret.
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (lines_tx, lines) = mpsc::channel();
        let secrets = std::mem::take(&mut self.secrets);
        let reader = std::thread::spawn(move || {
            let mut leaks = Vec::new();
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                if secrets.iter().any(|secret| line.contains(secret.as_str())) {
                    leaks.push(line.clone());
                }
                let _ = lines_tx.send(line);
            }
            leaks
        });
        let mut server = Server {
            child,
            data_dir: self.data_dir.clone(),
            ports: BTreeMap::new(),
            startup_log: String::new(),
            reader: Some(reader),
            lines,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match server.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some((name, addr)) = line.split_once(" listening on ") {
                        let port = addr
                            .trim()
                            .parse::<std::net::SocketAddr>()
                            .unwrap_or_else(|e| panic!("{e}: {line}"))
                            .port();
                        server.ports.insert(name.to_owned(), port);
                    }
                    let running = line.contains("sealmail is running");
                    server.startup_log.push_str(&line);
                    server.startup_log.push('\n');
                    if running {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("sealmail serve exited early:\n{}", server.startup_log)
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "sealmail serve did not start within {START_TIMEOUT:?}:\n{}",
                    server.startup_log
                ),
            }
        }
        for name in &self.listeners {
            assert!(
                server.ports.contains_key(*name),
                "{name} not announced:\n{}",
                server.startup_log
            );
        }
        server
    }
}

/// A running `sealmail serve`; killed if the test fails before it stops it.
pub struct Server {
    child: Child,
    data_dir: PathBuf,
    ports: BTreeMap<String, u16>,
    startup_log: String,
    reader: Option<JoinHandle<Vec<String>>>,
    /// Log lines after startup, for tests that wait for one.
    lines: mpsc::Receiver<String>,
}

impl Server {
    /// The port a listener was bound to, by the name in [`LISTENERS`].
    pub fn port(&self, listener: &str) -> u16 {
        *self
            .ports
            .get(listener)
            .unwrap_or_else(|| panic!("{listener} is not listening"))
    }

    /// Everything the server logged up to "sealmail is running".
    pub fn startup_log(&self) -> &str {
        &self.startup_log
    }

    /// The next log line containing `needle`, waiting at most `limit`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// The self-signed certificate the server generated into its data directory, which
    /// clients verify against.
    pub fn cert(&self) -> PathBuf {
        self.data_dir.join("tls/cert.pem")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then a graceful exit; asserts that no secret was ever logged.
    pub fn stop(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let signalled = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(signalled.is_ok_and(|status| status.success()), "kill -TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "sealmail serve did not stop within {STOP_TIMEOUT:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.assert_no_secret_logged();
        status
    }

    /// SIGKILL, as a crash would; the secret check still runs.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.assert_no_secret_logged();
    }

    fn assert_no_secret_logged(&mut self) {
        if let Some(reader) = self.reader.take() {
            let leaks = reader.join().expect("the log reader thread");
            assert!(leaks.is_empty(), "secrets in the server's log: {leaks:?}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            self.assert_no_secret_logged();
        }
    }
}
