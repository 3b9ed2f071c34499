//! Backups to a real S3-compatible server: `moto_server` (PyPI `moto[server]`, installed by
//! `.ci/run`) on a free 127.0.0.1 port, driven by the real binary — `sealmail backup` with the
//! standard AWS environment variables, and `sealmail serve`'s scheduled backups with the
//! `[backup]` section of its config file. The stored objects are read back over plain HTTP
//! (moto checks no signatures), independently of the SDK that wrote them.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::moto::{Moto, find};
use support::{Serve, Server, ok};

const PASSWORD: &str = "s3 backup test password";

/// The snapshot objects (`<prefix>/<mailbox id>/<version>.sqlite`) in `bucket`.
fn snapshot_keys(moto: &Moto, bucket: &str) -> Vec<String> {
    let mut keys: Vec<String> = moto
        .keys(bucket)
        .into_iter()
        .filter(|key| key.ends_with(".sqlite"))
        .collect();
    keys.sort();
    keys
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    find(haystack, needle.as_bytes()).is_some()
}

/// The binary with the S3 client's settings in the standard AWS environment variables.
fn sealmail(data_dir: &Path, moto: &Moto) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sealmail"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        // Nothing from the developer's own AWS files may leak into the test, and the SDK must
        // never look for an EC2 metadata service (an address off this machine).
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", data_dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            data_dir.join("no-aws-credentials"),
        )
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN");
    command
}

fn run(mut command: Command, args: &[&str], stdin: &str) -> Output {
    support::run(command.args(args), stdin)
}

fn add_account(data_dir: &Path, moto: &Moto, address: &str) {
    ok(&run(
        sealmail(data_dir, moto),
        &["account", "add", address, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    ));
}

fn import_one(data_dir: &Path, moto: &Moto, address: &str, marker: &str) {
    let mbox = data_dir.with_extension("mbox");
    std::fs::write(
        &mbox,
        format!("From a Sat Nov 28 20:21:38 2026\nSubject: {marker}\n\nbody {marker}\n"),
    )
    .unwrap();
    ok(&run(
        sealmail(data_dir, moto),
        &[
            "import",
            address,
            mbox.to_str().unwrap(),
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    ));
}

#[test]
fn cli_backup_to_s3_stores_an_encrypted_object_lists_it_and_restores_from_it() {
    const MARKER: &str = "cliS3plaintextMARKER5v";
    let moto = Moto::start();
    moto.create_bucket("cli-backups");
    let dir = tempfile::tempdir().unwrap();
    let (data, fresh) = (dir.path().join("data"), dir.path().join("fresh"));
    let target = "s3://cli-backups/nightly/mail";
    add_account(&data, &moto, "c@example.org");
    import_one(&data, &moto, "c@example.org", MARKER);
    let backup = [
        "backup",
        "c@example.org",
        "--target",
        target,
        "--password-stdin",
    ];
    let password = format!("{PASSWORD}\n");

    let stored = ok(&run(sealmail(&data, &moto), &backup, &password));
    assert!(stored.starts_with("stored "), "{stored}");
    let snapshots = snapshot_keys(&moto, "cli-backups");
    assert_eq!(snapshots.len(), 1, "{:?}", moto.keys("cli-backups"));
    assert!(snapshots[0].starts_with("nightly/mail/"), "{snapshots:?}");
    let bytes = moto.object("cli-backups", &snapshots[0]);
    assert!(bytes.len() > 4096, "{} bytes", bytes.len());
    assert!(
        !contains(&bytes, MARKER),
        "the stored snapshot holds plaintext"
    );
    assert!(!bytes.starts_with(b"SQLite format 3\0"), "plaintext header");
    // The manifest beside it names the snapshot's hash and holds no plaintext either.
    let manifest = moto.object("cli-backups", &snapshots[0].replace(".sqlite", ".json"));
    assert!(!contains(&manifest, MARKER));
    let digest = sha256_hex(&bytes);
    assert!(contains(&manifest, &digest), "manifest lacks {digest}");

    let again = ok(&run(sealmail(&data, &moto), &backup, &password));
    assert!(again.starts_with("unchanged since "), "{again}");
    assert_eq!(snapshot_keys(&moto, "cli-backups").len(), 1);
    let listed = ok(&run(
        sealmail(&data, &moto),
        &["backup", "c@example.org", "--target", target, "--list"],
        "",
    ));
    assert_eq!(listed.lines().count(), 1, "{listed}");

    let restored = ok(&run(
        sealmail(&fresh, &moto),
        &[
            "restore",
            "c@example.org",
            "--target",
            target,
            "--password-stdin",
        ],
        &password,
    ));
    assert!(restored.starts_with("restored "), "{restored}");
    let out = dir.path().join("export");
    ok(&run(
        sealmail(&fresh, &moto),
        &[
            "export",
            "c@example.org",
            "--format",
            "mbox",
            "--output",
            out.to_str().unwrap(),
            "--password-stdin",
        ],
        &password,
    ));
    let exported = std::fs::read_to_string(out.join("INBOX.mbox")).unwrap();
    assert!(exported.contains(&format!("body {MARKER}")), "{exported}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    let output = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(bytes)?;
            child.wait_with_output()
        })
        .expect("sha256sum runs");
    String::from_utf8(output.stdout).unwrap()[..64].to_owned()
}

/// `sealmail serve` with a `[backup]` section in its config file.
fn start_server(data_dir: &Path, config: &Path, moto: &Moto) -> Server {
    let mut command = sealmail(data_dir, moto);
    // The scheduled backups must take their S3 settings from the config file alone.
    for name in [
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        command.env_remove(name);
    }
    let server = Serve::with_command(command, data_dir)
        .only(&["IMAP"])
        .config(config)
        .never_logs(PASSWORD)
        .start();
    assert!(
        server.startup_log().contains("scheduled backups to s3://"),
        "no scheduled backups announced: {}",
        server.startup_log()
    );
    server
}

const LOGIN_OVER_IMAP: &str = r#"
import imaplib, os
c = imaplib.IMAP4("127.0.0.1", int(os.environ["IMAP_PORT"]))
c.login("s@example.org", os.environ["PASSWORD"])
typ, data = c.select("INBOX")
assert typ == "OK" and data == [b"1"], (typ, data)
c.logout()
"#;

#[test]
fn scheduled_backup_of_a_logged_in_mailbox_lands_encrypted_in_s3() {
    const MARKER: &str = "serveS3plaintextMARKER2k";
    let moto = Moto::start();
    moto.create_bucket("scheduled");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    add_account(&data, &moto, "s@example.org");
    // The mail is there before the server starts, so every scheduled backup sees the same
    // content: the first is stored, later ones find nothing changed.
    import_one(&data, &moto, "s@example.org", MARKER);
    let config = dir.path().join("sealmail.toml");
    std::fs::write(
        &config,
        format!(
            "[backup]\ntarget = \"s3://scheduled/daily\"\ninterval_secs = 2\n\
             s3_endpoint = \"{}\"\ns3_region = \"us-east-1\"\n\
             s3_access_key_id = \"testing\"\ns3_secret_access_key = \"testing\"\n",
            moto.endpoint()
        ),
    )
    .unwrap();
    let server = start_server(&data, &config, &moto);
    let output = Command::new("python3")
        .arg("-c")
        .arg(LOGIN_OVER_IMAP)
        .env("IMAP_PORT", server.port("IMAP").to_string())
        .env("PASSWORD", PASSWORD)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "IMAP client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The login handed the server the key: the next timer tick (every 0.5 s with a 2 s
    // interval) backs the mailbox up. Later ticks find it unchanged and store nothing.
    let deadline = Instant::now() + Duration::from_secs(60);
    let snapshots = loop {
        let snapshots = snapshot_keys(&moto, "scheduled");
        // The manifest goes up after the snapshot: wait for both.
        let complete = snapshots.len() == 1
            && moto
                .keys("scheduled")
                .contains(&snapshots[0].replace(".sqlite", ".json"));
        if complete {
            break snapshots;
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled backup reached S3 within 60 s: {:?}",
            moto.keys("scheduled")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(snapshots[0].starts_with("daily/"), "{snapshots:?}");
    let bytes = moto.object("scheduled", &snapshots[0]);
    assert!(bytes.len() > 4096, "{} bytes", bytes.len());
    assert!(
        !contains(&bytes, MARKER),
        "the stored snapshot holds plaintext"
    );
    assert!(!bytes.starts_with(b"SQLite format 3\0"), "plaintext header");
    assert!(server.stop().success());

    // What the server stored is a real backup of that mailbox: `--list` reads it back.
    let listed = ok(&run(
        sealmail(&data, &moto),
        &[
            "backup",
            "s@example.org",
            "--target",
            "s3://scheduled/daily",
            "--list",
        ],
        "",
    ));
    assert_eq!(listed.lines().count(), 1, "{listed}");
}
