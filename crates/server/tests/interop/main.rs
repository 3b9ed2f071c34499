//! Real mail clients against the real `sealmail serve` binary: npm `imapflow`, Python's imaplib,
//! Debian's `mbsync` (isync), `mutt` and `fetchmail`. Each test starts its own server with its
//! own data directory and ports on 127.0.0.1, drives one client over TLS or STARTTLS, verifying
//! the server's generated certificate where the client can, and asserts on what the client saw
//! and on what the server then holds. Every client process runs under a deadline.
//!
//! The clients are installed by `.ci/run` (apt-get isync mutt fetchmail; npm ci for imapflow).

mod fetchmail;
mod imapflow;
mod imaplib;
mod mbsync;
mod mutt;
#[path = "../support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const ADDRESS: &str = "user@example.org";
pub const PASSWORD: &str = "interop pass-phrase 42";

/// A running `sealmail serve` with one account; killed if the test fails before it is dropped.
pub struct Server {
    serve: support::Server,
    /// The data directory and a scratch area for the client's files (configs, Maildirs).
    pub dir: tempfile::TempDir,
    /// Plain IMAP with STARTTLS.
    pub imap: u16,
    /// IMAP over implicit TLS.
    pub imaps: u16,
    /// The certificate the server generated for localhost and 127.0.0.1.
    pub cert: PathBuf,
}

impl Server {
    pub fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        add_account(&data, ADDRESS);
        // Every listener runs (with ports of the kernel's choosing), as in production; no
        // client's login may ever put the password into a log line.
        let serve = support::Serve::new(&data).never_logs(PASSWORD).start();
        let (imap, imaps) = (serve.port("IMAP"), serve.port("IMAPS"));
        let cert = data.join("tls/cert.pem");
        assert!(cert.is_file(), "self-signed certificate generated");
        Server {
            serve,
            dir,
            imap,
            imaps,
            cert,
        }
    }

    /// A path in the scratch area.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Run a Python script (a file under tests/interop/) with the server's coordinates in its
    /// environment: IMAP_PORT, IMAPS_PORT, CAFILE, ADDRESS, PASSWORD, plus `extra`.
    pub fn python(&self, script: &str, args: &[&str], extra: &[(&str, &str)]) -> String {
        let mut command = Command::new("python3");
        command.arg(interop_dir().join(script)).args(args);
        self.client_env(&mut command);
        for (name, value) in extra {
            command.env(name, value);
        }
        let output = run_bounded(command, Duration::from_secs(60));
        output.success_stdout()
    }

    /// Run mailbox.py's actions (create, append, flag, delete) against the server.
    pub fn mailbox(&self, actions: &[&str]) {
        self.python("mailbox.py", actions, &[]);
    }

    /// Every selectable folder with its messages, as seen over IMAP by imaplib.
    pub fn dump(&self) -> Dump {
        let json = self.python("mailbox.py", &["dump"], &[]);
        serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {json}"))
    }

    /// The variables every client script reads.
    pub fn client_env(&self, command: &mut Command) {
        command
            .env("IMAP_PORT", self.imap.to_string())
            .env("IMAPS_PORT", self.imaps.to_string())
            .env("CAFILE", self.serve.cert())
            .env("ADDRESS", ADDRESS)
            .env("PASSWORD", PASSWORD);
    }
}

fn add_account(data_dir: &Path, address: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sealmail"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["account", "add", address, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "account add: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Where the helper scripts live.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Folders and their messages as the server reports them.
#[derive(Debug, serde::Deserialize)]
pub struct Dump(pub std::collections::BTreeMap<String, Vec<DumpedMessage>>);

#[derive(Debug, Clone, serde::Deserialize)]
pub struct DumpedMessage {
    pub uid: u32,
    pub subject: String,
    pub flags: Vec<String>,
}

impl Dump {
    /// The subjects in `folder`, in UID order; panics if the folder does not exist.
    pub fn subjects(&self, folder: &str) -> Vec<&str> {
        self.folder(folder)
            .iter()
            .map(|m| m.subject.as_str())
            .collect()
    }

    pub fn folder(&self, folder: &str) -> &[DumpedMessage] {
        self.0
            .get(folder)
            .unwrap_or_else(|| panic!("no folder {folder} on the server: {self:?}"))
    }

    /// The flags of the one message with `subject` in `folder`.
    pub fn flags(&self, folder: &str, subject: &str) -> Vec<&str> {
        let matching: Vec<_> = self
            .folder(folder)
            .iter()
            .filter(|m| m.subject == subject)
            .collect();
        assert_eq!(matching.len(), 1, "one {subject:?} in {folder}: {self:?}");
        matching[0].flags.iter().map(String::as_str).collect()
    }
}

/// What a finished client process left behind.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Stdout of a run that must have succeeded; otherwise panic with everything it said.
    pub fn success_stdout(self) -> String {
        assert!(self.status.success(), "client failed: {}", self.report());
        self.stdout
    }

    pub fn report(&self) -> String {
        format!(
            "{}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Run `command` to completion, killing it (and failing the test) after `limit`: a client that
/// hangs on an unexpected server reply must not hang the test suite.
pub fn run_bounded(mut command: Command, limit: Duration) -> Finished {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} still running after {limit:?}\n--- stdout\n{}\n--- stderr\n{}",
                stdout.join().unwrap(),
                stderr.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Finished {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Write a file only its owner may read: clients refuse configs holding a password otherwise.
pub fn write_private(path: &Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
