//! The real `sealmail` binary driven as a user would: accounts, import, password change.

mod support;

use std::path::Path;
use std::process::Output;
use support::ok;

const MARKER: &str = "kq4SECRETmarker8w";

fn sealmail(data_dir: &Path, args: &[&str], stdin: &str) -> Output {
    support::run(support::sealmail(data_dir).args(args), stdin)
}

/// A failure: non-zero exit and exactly one line on stderr.
fn failure(output: &Output) -> String {
    assert!(!output.status.success(), "unexpected success");
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    assert_eq!(
        stderr.lines().count(),
        1,
        "one-line error expected: {stderr:?}"
    );
    stderr
}

fn grep_tree(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hits.extend(grep_tree(&path, needle));
        } else if std::fs::read(&path)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
        {
            hits.push(path.display().to_string());
        }
    }
    hits
}

#[test]
fn generated_password_is_printed_alone_and_works() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = ok(&sealmail(
        dir.path(),
        &["account", "add", "New.User@Example.org"],
        "",
    ));
    let password = stdout.trim_end();
    assert_eq!(stdout.lines().count(), 1);
    assert!(
        password.len() >= 24 && !password.contains(' '),
        "{password:?}"
    );
    let list = ok(&sealmail(dir.path(), &["account", "list"], ""));
    assert!(
        list.starts_with("new.user@example.org\t"),
        "normalized: {list}"
    );
    let mbox = dir.path().join("in.mbox");
    std::fs::write(&mbox, "From a Sat Nov 28 20:21:38 2026\nSubject: x\n\ny\n").unwrap();
    let mbox = mbox.to_str().unwrap();
    ok(&sealmail(
        dir.path(),
        &["import", "new.user@example.org", mbox, "--password-stdin"],
        &format!("{password}\n"),
    ));
}

#[test]
fn imported_mail_leaves_no_plaintext_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&sealmail(
        &data,
        &["account", "add", "alice@example.org", "--password-stdin"],
        "correct horse\n",
    ));
    let mbox = dir.path().join("mail.mbox");
    let mut text = String::new();
    for i in 0..50 {
        text.push_str(&format!(
            "From a Sat Nov 28 20:21:38 2026\nSubject: {MARKER} {i}\nFrom: a@example.org\n\
             Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\n\
             body {MARKER}\n--b\nContent-Type: text/plain; name=notes.txt\n\
             Content-Disposition: attachment; filename=notes.txt\n\n{MARKER} in attachment {}\n--b--\n\n",
            "pad ".repeat(800)
        ));
    }
    std::fs::write(&mbox, text).unwrap();
    let out = sealmail(
        &data,
        &[
            "import",
            "alice@example.org",
            mbox.to_str().unwrap(),
            "--password-stdin",
        ],
        "correct horse\n",
    );
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("imported 50 messages"));
    assert_eq!(grep_tree(&data, MARKER.as_bytes()), Vec::<String>::new());
    let list = ok(&sealmail(&data, &["account", "list"], ""));
    assert!(
        !list.contains("used=0"),
        "usage recorded after import: {list}"
    );
}

#[test]
fn wrong_password_unknown_address_and_missing_registry_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let eml = dir.path().join("m.eml");
    std::fs::write(&eml, "Subject: x\r\n\r\ny\r\n").unwrap();
    let eml = eml.to_str().unwrap();
    let missing = failure(&sealmail(
        dir.path(),
        &["import", "a@example.org", eml, "--password-stdin"],
        "pw\n",
    ));
    assert!(missing.contains("registry"), "{missing}");
    ok(&sealmail(
        dir.path(),
        &["account", "add", "a@example.org", "--password-stdin"],
        "right password\n",
    ));
    let wrong = failure(&sealmail(
        dir.path(),
        &["import", "a@example.org", eml, "--password-stdin"],
        "wrong\n",
    ));
    let unknown = failure(&sealmail(
        dir.path(),
        &["import", "b@example.org", eml, "--password-stdin"],
        "right password\n",
    ));
    assert_eq!(wrong, unknown, "no address enumeration");
    let duplicate = failure(&sealmail(
        dir.path(),
        &["account", "add", "A@example.org", "--password-stdin"],
        "x y z w\n",
    ));
    assert!(duplicate.contains("already exists"), "{duplicate}");
    let empty = failure(&sealmail(
        dir.path(),
        &["import", "a@example.org", eml, "--password-stdin"],
        "",
    ));
    assert!(empty.contains("standard input"), "{empty}");
}

#[test]
fn password_change_rewraps_without_touching_the_mailbox_file() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    ok(&sealmail(
        dir.path(),
        &["account", "add", "p@example.org", "--password-stdin"],
        "old password\n",
    ));
    let list = ok(&sealmail(dir.path(), &["account", "list"], ""));
    let id = list.split('\t').nth(1).unwrap().to_string();
    let file = dir
        .path()
        .join("mailboxes")
        .join(&id[..2])
        .join(format!("{id}.sqlite"));
    let (inode, bytes) = (
        std::fs::metadata(&file).unwrap().ino(),
        std::fs::read(&file).unwrap(),
    );
    ok(&sealmail(
        dir.path(),
        &["account", "passwd", "p@example.org", "--password-stdin"],
        "old password\nnew password\n",
    ));
    assert_eq!(std::fs::metadata(&file).unwrap().ino(), inode);
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    let eml = dir.path().join("m.eml");
    std::fs::write(&eml, "Subject: x\r\n\r\ny\r\n").unwrap();
    let eml = eml.to_str().unwrap();
    failure(&sealmail(
        dir.path(),
        &["import", "p@example.org", eml, "--password-stdin"],
        "old password\n",
    ));
    ok(&sealmail(
        dir.path(),
        &["import", "p@example.org", eml, "--password-stdin"],
        "new password\n",
    ));
}

#[test]
fn recovery_code_resets_and_key_rotation_keeps_mail() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(&sealmail(
        dir.path(),
        &[
            "account",
            "add",
            "r@example.org",
            "--password-stdin",
            "--recovery-code",
        ],
        "first password\n",
    ));
    let code = out
        .trim()
        .strip_prefix("recovery code: ")
        .expect("code printed")
        .to_string();
    let eml = dir.path().join("m.eml");
    std::fs::write(&eml, format!("Subject: {MARKER}\r\n\r\nkeep me\r\n")).unwrap();
    let eml = eml.to_str().unwrap();
    ok(&sealmail(
        dir.path(),
        &["import", "r@example.org", eml, "--password-stdin"],
        "first password\n",
    ));
    ok(&sealmail(
        dir.path(),
        &["account", "recover", "r@example.org", "--password-stdin"],
        &format!("{code}\nsecond password\n"),
    ));
    let rotated = ok(&sealmail(
        dir.path(),
        &["account", "rotate-key", "r@example.org", "--password-stdin"],
        "second password\n",
    ));
    let new_code = rotated
        .trim()
        .strip_prefix("new recovery code: ")
        .expect("new code printed");
    assert_ne!(new_code, code);
    failure(&sealmail(
        dir.path(),
        &["account", "recover", "r@example.org", "--password-stdin"],
        &format!("{code}\nthird password\n"),
    ));
    ok(&sealmail(
        dir.path(),
        &["import", "r@example.org", eml, "--password-stdin"],
        "second password\n",
    ));
}

#[test]
fn remove_needs_confirmation_and_deletes_the_files() {
    let dir = tempfile::tempdir().unwrap();
    ok(&sealmail(
        dir.path(),
        &["account", "add", "gone@example.org", "--password-stdin"],
        "pw pw pw\n",
    ));
    let refused = failure(&sealmail(
        dir.path(),
        &["account", "remove", "gone@example.org"],
        "",
    ));
    assert!(refused.contains("--yes"));
    assert_eq!(
        std::fs::read_dir(dir.path().join("mailboxes"))
            .unwrap()
            .count(),
        1
    );
    ok(&sealmail(
        dir.path(),
        &["account", "remove", "gone@example.org", "--yes"],
        "",
    ));
    assert_eq!(ok(&sealmail(dir.path(), &["account", "list"], "")), "");
    assert_eq!(
        grep_tree(&dir.path().join("mailboxes"), b"").len(),
        0,
        "no mailbox file remains"
    );
}

#[test]
fn delivered_mail_is_sealed_until_the_owner_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    ok(&sealmail(
        dir.path(),
        &["account", "add", "o@example.org", "--password-stdin"],
        "pw pw\n",
    ));
    let message = format!("Subject: {MARKER}\r\n\r\n{MARKER} body\r\n");
    ok(&sealmail(
        dir.path(),
        &["deliver", "o@example.org"],
        &message,
    ));
    ok(&sealmail(
        dir.path(),
        &["deliver", "o@example.org"],
        &message,
    ));
    failure(&sealmail(
        dir.path(),
        &["deliver", "nobody@example.org"],
        &message,
    ));
    failure(&sealmail(dir.path(), &["deliver", "o@example.org"], ""));
    assert_eq!(
        grep_tree(dir.path(), MARKER.as_bytes()),
        Vec::<String>::new()
    );
    let queued = |dir: &Path| count_files(&dir.join("queue"));
    assert_eq!(queued(dir.path()), 2);
    // Any login drains the queue; an empty import is the cheapest login the CLI has.
    let empty = dir.path().join("empty.mbox");
    std::fs::write(&empty, "From x Sat Nov 28 20:21:38 2026\nSubject: y\n\nz\n").unwrap();
    ok(&sealmail(
        dir.path(),
        &[
            "import",
            "o@example.org",
            empty.to_str().unwrap(),
            "--password-stdin",
        ],
        "pw pw\n",
    ));
    assert_eq!(queued(dir.path()), 0, "queue drained at login");
    let list = ok(&sealmail(dir.path(), &["account", "list"], ""));
    assert!(!list.contains("used=0"), "{list}");
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap().path())
        .map(|p| if p.is_dir() { count_files(&p) } else { 1 })
        .sum()
}

#[test]
fn query_prints_one_document_per_line_and_rejects_hostile_input() {
    let dir = tempfile::tempdir().unwrap();
    ok(&sealmail(
        dir.path(),
        &["account", "add", "q@example.org", "--password-stdin"],
        "pw pw\n",
    ));
    let mbox = dir.path().join("q.mbox");
    let mut text = String::new();
    for i in 0..5 {
        text.push_str(&format!(
            "From a Sat Nov 28 20:21:38 2026\nSubject: item {i}\nFrom: x{i}@example.org\n\nbody\n\n"
        ));
    }
    std::fs::write(&mbox, text).unwrap();
    ok(&sealmail(
        dir.path(),
        &[
            "import",
            "q@example.org",
            mbox.to_str().unwrap(),
            "--password-stdin",
        ],
        "pw pw\n",
    ));
    let request = r#"{"collection":"messages","op":"find","filter":{"subject":{"$regex":"item [13]"}},"projection":{"subject":1,"uid":1},"sort":{"uid":-1}}"#;
    let out = ok(&sealmail(
        dir.path(),
        &["query", "q@example.org", request, "--password-stdin"],
        "pw pw\n",
    ));
    let docs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 2, "{out}");
    assert_eq!(docs[0]["subject"], "item 3");
    assert_eq!(docs[1]["subject"], "item 1");
    let count = ok(&sealmail(
        dir.path(),
        &[
            "query",
            "q@example.org",
            r#"{"collection":"messages","op":"count","filter":{}}"#,
            "--password-stdin",
        ],
        "pw pw\n",
    ));
    assert_eq!(count.trim(), r#"{"count":5}"#);
    let unknown = failure(&sealmail(
        dir.path(),
        &[
            "query",
            "q@example.org",
            r#"{"collection":"messages","op":"find","filter":{"password; DROP TABLE messages":1}}"#,
            "--password-stdin",
        ],
        "pw pw\n",
    ));
    assert!(
        unknown.contains("password; DROP TABLE messages"),
        "names the unknown field: {unknown}"
    );
    failure(&sealmail(
        dir.path(),
        &["query", "q@example.org", "{not json", "--password-stdin"],
        "pw pw\n",
    ));
    let count = ok(&sealmail(
        dir.path(),
        &[
            "query",
            "q@example.org",
            r#"{"collection":"messages","op":"count","filter":{}}"#,
            "--password-stdin",
        ],
        "pw pw\n",
    ));
    assert_eq!(count.trim(), r#"{"count":5}"#, "nothing was dropped");
}

#[test]
fn backup_list_restore_into_a_fresh_data_dir_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let (data, fresh, store) = (
        dir.path().join("data"),
        dir.path().join("fresh"),
        dir.path().join("backups"),
    );
    let target = format!("file://{}", store.display());
    ok(&sealmail(
        &data,
        &["account", "add", "b@example.org", "--password-stdin"],
        "backup pw\n",
    ));
    let mbox = dir.path().join("b.mbox");
    std::fs::write(
        &mbox,
        format!("From a Sat Nov 28 20:21:38 2026\nSubject: {MARKER}\n\nkeep {MARKER}\n"),
    )
    .unwrap();
    ok(&sealmail(
        &data,
        &[
            "import",
            "b@example.org",
            mbox.to_str().unwrap(),
            "--password-stdin",
        ],
        "backup pw\n",
    ));
    let stored = ok(&sealmail(
        &data,
        &[
            "backup",
            "b@example.org",
            "--target",
            &target,
            "--password-stdin",
        ],
        "backup pw\n",
    ));
    assert!(stored.starts_with("stored "), "{stored}");
    let again = ok(&sealmail(
        &data,
        &[
            "backup",
            "b@example.org",
            "--target",
            &target,
            "--password-stdin",
        ],
        "backup pw\n",
    ));
    assert!(again.starts_with("unchanged since "), "{again}");
    let listed = ok(&sealmail(
        &data,
        &["backup", "b@example.org", "--target", &target, "--list"],
        "",
    ));
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert_eq!(
        grep_tree(&store, MARKER.as_bytes()),
        Vec::<String>::new(),
        "backups are encrypted"
    );
    failure(&sealmail(
        &fresh,
        &[
            "restore",
            "b@example.org",
            "--target",
            &target,
            "--password-stdin",
        ],
        "wrong pw\n",
    ));
    let restored = ok(&sealmail(
        &fresh,
        &[
            "restore",
            "b@example.org",
            "--target",
            &target,
            "--password-stdin",
        ],
        "backup pw\n",
    ));
    assert!(restored.starts_with("restored "), "{restored}");
    let out = dir.path().join("export");
    ok(&sealmail(
        &fresh,
        &[
            "export",
            "b@example.org",
            "--format",
            "mbox",
            "--output",
            out.to_str().unwrap(),
            "--password-stdin",
        ],
        "backup pw\n",
    ));
    let exported = std::fs::read_to_string(out.join("INBOX.mbox")).unwrap();
    assert!(
        exported.contains(&format!("Subject: {MARKER}\n\nkeep {MARKER}\n")),
        "{exported}"
    );
    let purged = sealmail(
        &data,
        &[
            "account",
            "remove",
            "b@example.org",
            "--yes",
            "--purge-backups",
            &target,
        ],
        "",
    );
    ok(&purged);
    assert_eq!(count_files(&store), 0, "backups purged");
}

#[test]
fn dkim_keygen_prints_the_dns_record_and_keeps_the_key_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = ok(&sealmail(
        dir.path(),
        &[
            "domain",
            "dkim-keygen",
            "Example.ORG",
            "--selector",
            "mail1",
        ],
        "",
    ));
    let record = out
        .lines()
        .find(|l| l.starts_with("mail1._domainkey.example.org. IN TXT "))
        .unwrap_or_else(|| panic!("no TXT record line: {out}"));
    assert!(record.contains("\"v=DKIM1; k=ed25519; p="), "{record}");
    let key = dir.path().join("dkim/example.org.json");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let error = failure(&sealmail(
        dir.path(),
        &["domain", "dkim-keygen", "example.org"],
        "",
    ));
    assert!(error.contains("--replace"), "{error}");
    // RSA: the record is longer than one 255-character string, so it is split.
    let out = ok(&sealmail(
        dir.path(),
        &[
            "domain",
            "dkim-keygen",
            "example.org",
            "--algorithm",
            "rsa",
            "--replace",
        ],
        "",
    ));
    let record = out
        .lines()
        .find(|l| l.starts_with("sealmail._domainkey.example.org. IN TXT "))
        .unwrap_or_else(|| panic!("no TXT record line: {out}"));
    assert!(record.contains("\"v=DKIM1; k=rsa; p="), "{record}");
    assert!(record.matches('"').count() >= 4, "split strings: {record}");
    // Argument errors come from clap (several lines, with the accepted values).
    let output = sealmail(
        dir.path(),
        &["domain", "dkim-keygen", "example.org", "--algorithm", "dsa"],
        "",
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("ed25519, rsa"));
}

#[test]
fn account_forward_sets_shows_and_clears_forwarding() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    ok(&sealmail(
        data,
        &["account", "add", "fwd@example.org", "--password-stdin"],
        "pw for fwd\n",
    ));
    let shown = ok(&sealmail(
        data,
        &[
            "account",
            "forward",
            "fwd@example.org",
            "--to",
            "Other@Example.net",
            "--webhook",
            "https://hooks.example.net/in",
            "--secret-stdin",
            "--mode",
            "forward-only",
        ],
        "hook-secret-from-stdin\n",
    ));
    assert_eq!(
        shown,
        "mode\tforward-only\nto\tother@example.net\nwebhook\thttps://hooks.example.net/in\n"
    );
    // Secrets are never echoed back.
    let shown = ok(&sealmail(
        data,
        &["account", "forward", "fwd@example.org"],
        "",
    ));
    assert!(!shown.contains("hook-secret"), "{shown}");
    // A generated secret is printed once.
    let generated = ok(&sealmail(
        data,
        &[
            "account",
            "forward",
            "fwd@example.org",
            "--webhook",
            "http://127.0.0.1:9/h",
        ],
        "",
    ));
    let secret_line = generated.lines().next().unwrap();
    assert!(secret_line.starts_with("webhook secret: "), "{generated}");
    assert_eq!(secret_line.len(), "webhook secret: ".len() + 64);
    let error = failure(&sealmail(
        data,
        &[
            "account",
            "forward",
            "fwd@example.org",
            "--mode",
            "sometimes",
        ],
        "",
    ));
    assert!(error.contains("forwarding mode"), "{error}");
    let error = failure(&sealmail(
        data,
        &[
            "account",
            "forward",
            "fwd@example.org",
            "--webhook",
            "ftp://x/",
        ],
        "",
    ));
    assert!(error.contains("webhook URL"), "{error}");
    let cleared = ok(&sealmail(
        data,
        &["account", "forward", "fwd@example.org", "--clear"],
        "",
    ));
    assert!(cleared.starts_with("no forwarding"), "{cleared}");
}

/// Every entry of a zip: name and bytes, in archive order.
fn zip_entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..archive.len())
        .map(|index| {
            let mut entry = archive.by_index(index).unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            (entry.name().to_owned(), data)
        })
        .collect()
}

#[test]
fn eml_zip_export_to_stdout_then_import_gives_the_same_messages_flags_and_folders() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for address in ["from@example.org", "to@example.org"] {
        ok(&sealmail(
            &data,
            &["account", "add", address, "--password-stdin"],
            "zip pw\n",
        ));
    }
    // A Maildir with flags and a subfolder, so there is something for the manifest to keep.
    let maildir = dir.path().join("maildir");
    for sub in ["cur", "new", "tmp", ".Work/cur", ".Work/new", ".Work/tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let files = [
        ("cur/1700000000.a.host:2,FS", "flagged and seen"),
        ("new/1700000001.b.host", "new"),
        (
            ".Work/cur/1700000002.c.host:2,PRT",
            "forwarded answered deleted",
        ),
    ];
    for (index, (name, subject)) in files.into_iter().enumerate() {
        let path = maildir.join(name);
        std::fs::write(
            &path,
            format!("Subject: {subject}\r\nFrom: a@example.org\r\n\r\n{MARKER} {subject}\r\n"),
        )
        .unwrap();
        // The importer takes the internal date from the file time.
        let time =
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000 + index as u64);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(time)
            .unwrap();
    }
    ok(&sealmail(
        &data,
        &[
            "import",
            "from@example.org",
            maildir.to_str().unwrap(),
            "--password-stdin",
        ],
        "zip pw\n",
    ));

    let export_to = |address: &str, output: &str| {
        sealmail(
            &data,
            &[
                "export",
                address,
                "--format",
                "eml-zip",
                "--output",
                output,
                "--password-stdin",
            ],
            "zip pw\n",
        )
    };
    // Streamed to standard output (a pipe here, so no progress bar on stderr either).
    let streamed = export_to("from@example.org", "-");
    assert!(
        streamed.status.success(),
        "{}",
        String::from_utf8_lossy(&streamed.stderr)
    );
    assert!(!String::from_utf8_lossy(&streamed.stderr).contains('\r'));
    let archive = dir.path().join("from.zip");
    std::fs::write(&archive, &streamed.stdout).unwrap();
    let original = zip_entries(&streamed.stdout);
    assert_eq!(
        original
            .iter()
            .filter(|(name, _)| name.ends_with(".eml"))
            .count(),
        3
    );

    ok(&sealmail(
        &data,
        &[
            "import",
            "to@example.org",
            archive.to_str().unwrap(),
            "--password-stdin",
        ],
        "zip pw\n",
    ));
    let copy_path = dir.path().join("to.zip");
    ok(&export_to("to@example.org", copy_path.to_str().unwrap()));
    // Refuses to overwrite.
    failure(&export_to("to@example.org", copy_path.to_str().unwrap()));
    let copy = zip_entries(&std::fs::read(&copy_path).unwrap());

    // The same messages, byte for byte, under the same names...
    let messages = |entries: &[(String, Vec<u8>)]| -> Vec<(String, Vec<u8>)> {
        entries
            .iter()
            .filter(|(name, _)| name.ends_with(".eml"))
            .cloned()
            .collect()
    };
    assert_eq!(messages(&copy), messages(&original));
    // ...and the same folders, flags and internal dates in the manifests.
    let manifest = |entries: &[(String, Vec<u8>)]| -> serde_json::Value {
        let (_, bytes) = entries
            .iter()
            .find(|(name, _)| name == "sealmail-manifest.json")
            .expect("a manifest");
        serde_json::from_slice(bytes).unwrap()
    };
    let (before, after) = (manifest(&original), manifest(&copy));
    assert_eq!(before["messages"], after["messages"]);
    assert_eq!(before["folders"], after["folders"]);
    let work = before["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["folder"] == "Work")
        .expect("the Work message");
    assert_eq!(work["flags"]["answered"], true);
    assert_eq!(work["flags"]["deleted"], true);
    assert_eq!(work["flags"]["keywords"], serde_json::json!(["$Forwarded"]));
    assert_eq!(work["internal_date"], "2023-11-14T22:13:22Z");
}
