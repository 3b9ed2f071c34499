//! Dovecot from Debian's packages as the side-by-side baseline of the benchmark examples
//! (`crates/imap/examples/{loadgen,big_mailbox}.rs`, `crates/smtp/examples/ingest_bench.rs`):
//! its own config, state and mail under a temp dir, one listener on a free 127.0.0.1 port.
//! Included by each example with `#[path]`: examples of different crates share no code
//! otherwise, and a crate only for this would be heavier than the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A running Dovecot; stopped on drop.
pub struct Dovecot {
    pub base: PathBuf,
    pub addr: SocketAddr,
}

/// Who Dovecot's mail processes run as, and the config lines that make that so.
pub struct MailUser {
    pub name: String,
    config: String,
}

impl MailUser {
    /// As root the mail processes must run as another user (Debian's `dovecot`); otherwise
    /// everything runs as the current user.
    pub fn for_this_process() -> MailUser {
        let me = command_output("id", &["-un"]);
        if me == "root" {
            return MailUser {
                name: "dovecot".into(),
                config: String::new(),
            };
        }
        let group = command_output("id", &["-gn"]);
        MailUser {
            config: format!(
                "default_internal_user = {me}\ndefault_internal_group = {group}\n\
                 default_login_user = {me}\n"
            ),
            name: me,
        }
    }
}

impl Dovecot {
    /// A 127.0.0.1 port free right now, for the `{port}` of the config.
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port()
    }

    /// Start `binary` with `protocol_config` (protocols, passdb, userdb and services, listening
    /// on `port`) after the settings every instance shares, once `base/mail` holds the mail it
    /// starts with. Waits (bounded) until `port` accepts connections.
    pub fn start(
        binary: &Path,
        base: &Path,
        user: &MailUser,
        port: u16,
        protocol_config: &str,
    ) -> Dovecot {
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(base.join(sub)).unwrap();
        }
        let b = base.display();
        let config = format!(
            "listen = 127.0.0.1
base_dir = {b}/run
state_dir = {b}/state
log_path = {b}/dovecot.log
ssl = no
first_valid_uid = 0
{}{protocol_config}",
            user.config
        );
        std::fs::write(base.join("dovecot.conf"), config).unwrap();
        if user.name == "dovecot" {
            let status = Command::new("chown")
                .args(["-R", "dovecot:dovecot"])
                .arg(base.join("mail"))
                .status()
                .expect("chown");
            assert!(status.success(), "chown of the mail dir failed");
            // The dovecot user must reach its mail through the temp dirs.
            let mut dir = Some(base);
            while let Some(d) = dir {
                if d == Path::new("/") || d == Path::new("/tmp") {
                    break;
                }
                let _ = Command::new("chmod").arg("755").arg(d).status();
                dir = d.parent();
            }
        }
        let status = Command::new(binary)
            .arg("-c")
            .arg(base.join("dovecot.conf"))
            .status()
            .expect("dovecot starts");
        assert!(
            status.success(),
            "dovecot failed to start; see {b}/dovecot.log"
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "dovecot is not listening on {addr}; see {b}/dovecot.log"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Dovecot {
            base: base.into(),
            addr,
        }
    }
}

impl Dovecot {
    /// The process id of Dovecot's master process, which forks every other.
    pub fn master_pid(&self) -> u32 {
        std::fs::read_to_string(self.base.join("run/master.pid"))
            .ok()
            .and_then(|pid| pid.trim().parse().ok())
            .expect("dovecot's master.pid")
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.base.join("run/master.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

fn command_output(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// IMAP on `port` for the users of `base/passwd` (`user:{PLAIN}password` lines), each with a
/// Maildir under `base/mail/<user>/Maildir`; POP3 off.
pub fn imap_config(base: &Path, user: &MailUser, port: u16) -> String {
    let b = base.display();
    let mail_user = &user.name;
    format!(
        "protocols = imap
disable_plaintext_auth = no
mail_location = maildir:{b}/mail/%u/Maildir
passdb {{
  driver = passwd-file
  args = {b}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_user} home={b}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"
    )
}
