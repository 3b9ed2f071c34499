//! Debian's `mbsync` (isync) over implicit TLS, verifying the server's certificate: a two-way
//! sync of a folder tree with a local Maildir. Changes made on the server (flags, expunges, new
//! mail) reach the Maildir, and changes made in the Maildir (flags, deletions, new messages,
//! a new folder) reach the server, which the test reads back over imaplib.

use super::{Server, run_bounded, write_private};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One message file of a Maildir folder.
#[derive(Debug)]
struct MaildirMessage {
    path: PathBuf,
    subject: String,
    /// The Maildir info flags after ":2," (D F P R S T), sorted.
    flags: String,
}

/// The messages of the Maildir folder at `folder` (its cur/ and new/), sorted by subject.
fn maildir(folder: &Path) -> Vec<MaildirMessage> {
    let mut messages = Vec::new();
    for part in ["cur", "new"] {
        let Ok(entries) = std::fs::read_dir(folder.join(part)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let subject = text
                .lines()
                .find_map(|line| line.strip_prefix("Subject: "))
                .unwrap_or_default()
                .to_string();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let flags = name
                .split_once(":2,")
                .map(|(_, flags)| flags.to_string())
                .unwrap_or_default();
            messages.push(MaildirMessage {
                path,
                subject,
                flags,
            });
        }
    }
    messages.sort_by(|a, b| a.subject.cmp(&b.subject));
    messages
}

fn subjects(messages: &[MaildirMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.subject.as_str()).collect()
}

fn find<'a>(messages: &'a [MaildirMessage], subject: &str) -> &'a MaildirMessage {
    messages
        .iter()
        .find(|m| m.subject == subject)
        .unwrap_or_else(|| panic!("no {subject:?} in {messages:?}"))
}

/// Run `mbsync -a` once; it must succeed.
fn sync(server: &Server, config: &Path) -> String {
    let mut command = Command::new("mbsync");
    command
        .arg("--config")
        .arg(config)
        .arg("--all")
        .arg("--verbose")
        .env("HOME", server.dir.path());
    let finished = run_bounded(command, Duration::from_secs(60));
    let report = finished.report();
    assert!(finished.status.success(), "mbsync failed: {report}");
    report
}

#[test]
fn mbsync_two_way_sync_of_a_folder_tree() {
    let server = Server::start();
    server.mailbox(&[
        "create:Work",
        "create:Work/Reports",
        "append:INBOX:inbox read:\\Seen",
        "append:INBOX:inbox new",
        "append:Work:work flagged:\\Flagged",
        "append:Work/Reports:report one",
    ]);

    let local = server.path("mail");
    std::fs::create_dir_all(&local).unwrap();
    let config = server.path("mbsyncrc");
    write_private(
        &config,
        &format!(
            "IMAPAccount sealmail\n\
             Host 127.0.0.1\n\
             Port {port}\n\
             User {user}\n\
             Pass \"{password}\"\n\
             SSLType IMAPS\n\
             CertificateFile {cert}\n\
             Timeout 20\n\
             \n\
             IMAPStore remote\n\
             Account sealmail\n\
             \n\
             MaildirStore local\n\
             Path {local}/\n\
             Inbox {local}/INBOX\n\
             SubFolders Verbatim\n\
             \n\
             Channel everything\n\
             Far :remote:\n\
             Near :local:\n\
             Patterns *\n\
             Create Both\n\
             Expunge Both\n\
             SyncState *\n",
            port = server.imaps,
            user = super::ADDRESS,
            password = super::PASSWORD,
            cert = server.cert.display(),
            local = local.display(),
        ),
    );

    // 1. First sync: the whole tree arrives with its flags.
    sync(&server, &config);
    let inbox = maildir(&local.join("INBOX"));
    assert_eq!(subjects(&inbox), ["inbox new", "inbox read"]);
    assert_eq!(find(&inbox, "inbox read").flags, "S");
    assert_eq!(find(&inbox, "inbox new").flags, "");
    let work = maildir(&local.join("Work"));
    assert_eq!(subjects(&work), ["work flagged"]);
    assert_eq!(find(&work, "work flagged").flags, "F");
    assert_eq!(
        subjects(&maildir(&local.join("Work/Reports"))),
        ["report one"]
    );

    // 2. Changes on the server reach the Maildir.
    server.mailbox(&[
        "flag:INBOX:inbox new:+\\Flagged",
        "flag:Work:work flagged:+\\Seen",
        "delete:INBOX:inbox read",
        "append:Work:work later",
    ]);
    sync(&server, &config);
    let inbox = maildir(&local.join("INBOX"));
    assert_eq!(subjects(&inbox), ["inbox new"], "expunge synced");
    assert_eq!(find(&inbox, "inbox new").flags, "F");
    let work = maildir(&local.join("Work"));
    assert_eq!(subjects(&work), ["work flagged", "work later"]);
    assert_eq!(find(&work, "work flagged").flags, "FS");

    // 3. Changes in the Maildir reach the server: a flag, a deleted file, a new message in an
    //    existing folder and a new folder with a message.
    let new_flagged = find(&inbox, "inbox new");
    let seen_name = format!(
        "{}:2,FS",
        new_flagged
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .split_once(":2,")
            .unwrap()
            .0
    );
    let cur = local.join("INBOX/cur");
    std::fs::rename(&new_flagged.path, cur.join(seen_name)).unwrap();
    std::fs::remove_file(&find(&work, "work later").path).unwrap();
    let new_message = |folder: &Path, name: &str, subject: &str| {
        for part in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(folder.join(part)).unwrap();
        }
        std::fs::write(
            folder.join("new").join(name),
            format!(
                "From: me@example.org\nTo: user@example.org\nSubject: {subject}\n\
                 Message-ID: <{name}@example.org>\n\nwritten locally\n"
            ),
        )
        .unwrap();
    };
    new_message(
        &local.join("Work/Reports"),
        "1700000000.local1.host",
        "report two",
    );
    new_message(
        &local.join("Personal"),
        "1700000000.local2.host",
        "personal note",
    );
    sync(&server, &config);

    let dump = server.dump();
    assert_eq!(dump.subjects("INBOX"), ["inbox new"]);
    assert_eq!(dump.flags("INBOX", "inbox new"), ["\\Flagged", "\\Seen"]);
    assert_eq!(
        dump.subjects("Work"),
        ["work flagged"],
        "local deletion expunged"
    );
    assert_eq!(dump.subjects("Work/Reports"), ["report one", "report two"]);
    assert_eq!(
        dump.subjects("Personal"),
        ["personal note"],
        "folder created"
    );

    // 4. A further sync has nothing to do and changes nothing on either side.
    let report = sync(&server, &config);
    let again = server.dump();
    assert_eq!(
        format!("{:?}", again.0),
        format!("{:?}", dump.0),
        "idempotent: {report}"
    );
    assert_eq!(
        subjects(&maildir(&local.join("Work/Reports"))),
        ["report one", "report two"]
    );
}
