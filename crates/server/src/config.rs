//! `sealmail serve` configuration: a TOML file (`--config`), then `SEALMAIL_<NAME>_LISTEN`
//! environment overrides, then built-in defaults that work at once on 127.0.0.1.
//!
//! ```toml
//! [listen]
//! imap = "127.0.0.1:1143"      # plain with STARTTLS; "" disables a listener
//! imaps = "127.0.0.1:1993"     # implicit TLS
//! pop3 = "127.0.0.1:1110"      # plain with STLS
//! pop3s = "127.0.0.1:1995"     # implicit TLS
//! smtp = "127.0.0.1:2525"      # MX (inbound), STARTTLS
//! submission = "127.0.0.1:1587" # authenticated submission, STARTTLS
//! metrics = "127.0.0.1:9464"   # Prometheus text format at /metrics
//!
//! [tls]
//! cert = "/etc/sealmail/fullchain.pem"
//! key = "/etc/sealmail/privkey.pem"
//!
//! [imap]
//! max_connections = 10000
//! max_connections_per_ip = 50
//! idle_timeout_secs = 1800
//! allow_plaintext_auth_from_loopback = true
//!
//! [pop3]                       # same keys as [imap]; idle_timeout_secs defaults to 600
//!
//! [smtp]
//! hostname = "mx.example.org"  # greeting and Received: headers
//! max_message_size = 26214400
//! allow_plaintext_auth_from_loopback = true
//!
//! [backup]                     # daily backups of the mailboxes of logged-in users
//! target = "s3://bucket/prefix" # or "file:///var/backups/sealmail"
//! hour = 3                     # from 03:00 UTC each day; without it, at most once per 24 h
//! keep_daily = 7               # retention: newest version of each of the last 7 days
//! keep_monthly = 12            # ... and of each of the last 12 months
//! # S3 settings; each falls back to the standard AWS environment (AWS_ENDPOINT_URL, ...).
//! s3_endpoint = "http://127.0.0.1:9000"
//! s3_region = "us-east-1"
//! s3_access_key_id = "..."
//! s3_secret_access_key = "..."
//! ```

use crate::tls::TlsFiles;
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything `serve` needs to know, after defaults and overrides are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Plain IMAP with STARTTLS; `None` when disabled.
    pub imap: Option<SocketAddr>,
    /// IMAP over implicit TLS.
    pub imaps: Option<SocketAddr>,
    /// Plain POP3 with STLS; `None` when disabled.
    pub pop3: Option<SocketAddr>,
    /// POP3 over implicit TLS.
    pub pop3s: Option<SocketAddr>,
    /// Prometheus metrics (`GET /metrics`), plain HTTP: keep it on loopback or a private network.
    pub metrics: Option<SocketAddr>,
    pub tls: TlsFiles,
    pub imap_limits: ImapLimits,
    /// SMTP MX (inbound) with STARTTLS.
    pub smtp: Option<SocketAddr>,
    /// SMTP submission with STARTTLS and AUTH.
    pub submission: Option<SocketAddr>,
    pub smtp_settings: SmtpSettings,
    pub pop3_limits: Pop3Limits,
    /// Scheduled backups; `None` when the file has no `[backup]` target.
    pub backup: Option<BackupSettings>,
}

/// The `[backup]` section: where and when `serve` backs up the mailboxes it holds keys for.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSettings {
    /// `file:///DIR` or `s3://BUCKET/PREFIX`.
    pub target: String,
    /// Back up daily from this UTC hour (0-23); without it, at most once per `interval_secs`.
    pub hour: Option<u8>,
    /// Shortest time between two backups of one mailbox when no `hour` is set (default one
    /// day; tests use seconds).
    #[serde(default = "one_day")]
    pub interval_secs: u64,
    #[serde(default = "seven")]
    pub keep_daily: u32,
    #[serde(default = "twelve")]
    pub keep_monthly: u32,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_access_key_id: Option<String>,
    /// Read once at start into the S3 client's credentials; never logged (`Debug` redacts it).
    pub s3_secret_access_key: Option<String>,
}

impl std::fmt::Debug for BackupSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupSettings")
            .field("target", &self.target)
            .field("hour", &self.hour)
            .field("interval_secs", &self.interval_secs)
            .field("keep_daily", &self.keep_daily)
            .field("keep_monthly", &self.keep_monthly)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("s3_region", &self.s3_region)
            .field("s3_access_key_id", &self.s3_access_key_id)
            .field(
                "s3_secret_access_key",
                &self.s3_secret_access_key.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

fn one_day() -> u64 {
    86_400
}
fn seven() -> u32 {
    7
}
fn twelve() -> u32 {
    12
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpSettings {
    /// Our name in the SMTP greeting and in Received: headers.
    pub hostname: String,
    /// Largest message accepted, in bytes (advertised as SIZE).
    pub max_message_size: usize,
    /// Accept AUTH on submission without TLS from 127.0.0.0/8 and ::1.
    pub allow_plaintext_auth_from_loopback: bool,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            hostname: "localhost".into(),
            max_message_size: 25 * 1024 * 1024,
            allow_plaintext_auth_from_loopback: true,
        }
    }
}

/// Limits of the POP3 listeners: the IMAP keys, with RFC 1939's 10-minute autologout.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pop3Limits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub idle_timeout_secs: u64,
    /// Accept USER/PASS and AUTH without TLS from 127.0.0.0/8 and ::1, as for IMAP.
    pub allow_plaintext_auth_from_loopback: bool,
}

impl Default for Pop3Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: 50,
            idle_timeout_secs: 10 * 60,
            allow_plaintext_auth_from_loopback: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImapLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub idle_timeout_secs: u64,
    /// Accept LOGIN/AUTHENTICATE without TLS from 127.0.0.0/8 and ::1 (local clients, tests).
    pub allow_plaintext_auth_from_loopback: bool,
}

impl Default for ImapLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: 50,
            idle_timeout_secs: 30 * 60,
            allow_plaintext_auth_from_loopback: true,
        }
    }
}

/// The file's shape; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ConfigFile {
    listen: ListenSection,
    tls: TlsSection,
    imap: ImapLimits,
    pop3: Pop3Limits,
    smtp: SmtpSettings,
    backup: Option<BackupSettings>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ListenSection {
    imap: Option<String>,
    imaps: Option<String>,
    pop3: Option<String>,
    pop3s: Option<String>,
    smtp: Option<String>,
    submission: Option<String>,
    metrics: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct TlsSection {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

pub const DEFAULT_IMAP: &str = "127.0.0.1:1143";
pub const DEFAULT_IMAPS: &str = "127.0.0.1:1993";
pub const DEFAULT_POP3: &str = "127.0.0.1:1110";
pub const DEFAULT_POP3S: &str = "127.0.0.1:1995";
pub const DEFAULT_SMTP: &str = "127.0.0.1:2525";
pub const DEFAULT_SUBMISSION: &str = "127.0.0.1:1587";
pub const DEFAULT_METRICS: &str = "127.0.0.1:9464";

impl Config {
    /// Load `path` (if any), then apply `SEALMAIL_*_LISTEN` from `env`.
    pub fn load(path: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let file: ConfigFile = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("config {}", path.display()))?
            }
            None => ConfigFile::default(),
        };
        let listener = |name: &str, from_file: Option<String>, default: &str| {
            let value = env(&format!("SEALMAIL_{name}_LISTEN"))
                .or(from_file)
                .unwrap_or_else(|| default.to_string());
            parse_listen(name, &value)
        };
        Ok(Config {
            imap: listener("IMAP", file.listen.imap, DEFAULT_IMAP)?,
            imaps: listener("IMAPS", file.listen.imaps, DEFAULT_IMAPS)?,
            pop3: listener("POP3", file.listen.pop3, DEFAULT_POP3)?,
            pop3s: listener("POP3S", file.listen.pop3s, DEFAULT_POP3S)?,
            metrics: listener("METRICS", file.listen.metrics, DEFAULT_METRICS)?,
            tls: TlsFiles {
                cert: file.tls.cert,
                key: file.tls.key,
            },
            imap_limits: file.imap,
            pop3_limits: file.pop3,
            smtp: listener("SMTP", file.listen.smtp, DEFAULT_SMTP)?,
            submission: listener("SUBMISSION", file.listen.submission, DEFAULT_SUBMISSION)?,
            smtp_settings: file.smtp,
            backup: file.backup.map(BackupSettings::validated).transpose()?,
        })
    }
}

impl BackupSettings {
    fn validated(self) -> Result<Self> {
        if self.hour.is_some_and(|hour| hour > 23) {
            bail!("[backup] hour must be 0 to 23 (UTC)");
        }
        if self.interval_secs == 0 {
            bail!("[backup] interval_secs must be at least 1");
        }
        Ok(self)
    }
}

/// `""` or `"off"` disables a listener; anything else must be `host:port`.
fn parse_listen(name: &str, value: &str) -> Result<Option<SocketAddr>> {
    let value = value.trim();
    if value.is_empty() || value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match value.parse() {
        Ok(addr) => Ok(Some(addr)),
        Err(_) => bail!("{name} listen address {value:?} is not host:port (e.g. 127.0.0.1:1143)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_listen_on_loopback() {
        let config = Config::load(None, no_env).unwrap();
        assert_eq!(config.imap, Some(DEFAULT_IMAP.parse().unwrap()));
        assert_eq!(config.imaps, Some(DEFAULT_IMAPS.parse().unwrap()));
        assert_eq!(config.pop3, Some(DEFAULT_POP3.parse().unwrap()));
        assert_eq!(config.pop3s, Some(DEFAULT_POP3S.parse().unwrap()));
        assert_eq!(config.pop3_limits.idle_timeout_secs, 600);
        assert_eq!(config.tls, TlsFiles::default());
        assert_eq!(config.smtp, Some(DEFAULT_SMTP.parse().unwrap()));
        assert_eq!(config.submission, Some(DEFAULT_SUBMISSION.parse().unwrap()));
    }

    #[test]
    fn smtp_listeners_from_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealmail.toml");
        std::fs::write(
            &path,
            "[listen]\nsmtp = \"0.0.0.0:25\"\nsubmission = \"off\"\n[smtp]\nhostname = \"mx.example.org\"\n",
        )
        .unwrap();
        let env =
            |name: &str| (name == "SEALMAIL_SMTP_LISTEN").then(|| "127.0.0.1:2626".to_string());
        let config = Config::load(Some(&path), env).unwrap();
        assert_eq!(config.smtp, Some("127.0.0.1:2626".parse().unwrap()));
        assert_eq!(config.submission, None);
        assert_eq!(config.smtp_settings.hostname, "mx.example.org");
        assert_eq!(config.smtp_settings.max_message_size, 25 * 1024 * 1024);
    }

    #[test]
    fn file_then_environment_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealmail.toml");
        std::fs::write(
            &path,
            "[listen]\nimap = \"0.0.0.0:143\"\nimaps = \"\"\npop3s = \"\"\n[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n\
             [imap]\nmax_connections = 7\n[pop3]\nmax_connections = 3\n",
        )
        .unwrap();
        let env = |name: &str| match name {
            "SEALMAIL_IMAP_LISTEN" => Some("127.0.0.1:2143".to_string()),
            "SEALMAIL_POP3_LISTEN" => Some("127.0.0.1:2110".to_string()),
            _ => None,
        };
        let config = Config::load(Some(&path), env).unwrap();
        assert_eq!(config.pop3, Some("127.0.0.1:2110".parse().unwrap()));
        assert_eq!(config.pop3s, None);
        assert_eq!(config.pop3_limits.max_connections, 3);
        assert_eq!(config.pop3_limits.idle_timeout_secs, 600);
        assert_eq!(config.imap, Some("127.0.0.1:2143".parse().unwrap()));
        assert_eq!(config.imaps, None, "empty string disables");
        assert_eq!(config.tls.cert.as_deref(), Some(Path::new("/c.pem")));
        assert_eq!(config.imap_limits.max_connections, 7);
        assert_eq!(
            config.imap_limits.max_connections_per_ip, 50,
            "unset keys keep defaults"
        );
    }

    #[test]
    fn backup_section_defaults_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealmail.toml");
        assert_eq!(Config::load(None, no_env).unwrap().backup, None);
        std::fs::write(
            &path,
            "[backup]\ntarget = \"file:///b\"\nhour = 3\ns3_secret_access_key = \"hush\"\n",
        )
        .unwrap();
        let backup = Config::load(Some(&path), no_env).unwrap().backup.unwrap();
        assert_eq!(backup.target, "file:///b");
        assert_eq!(backup.hour, Some(3));
        assert_eq!(
            (backup.interval_secs, backup.keep_daily, backup.keep_monthly),
            (86_400, 7, 12)
        );
        assert!(!format!("{backup:?}").contains("hush"), "secret redacted");
        std::fs::write(&path, "[backup]\ntarget = \"file:///b\"\nhour = 24\n").unwrap();
        let err = format!("{:#}", Config::load(Some(&path), no_env).unwrap_err());
        assert!(err.contains("hour"), "{err}");
        std::fs::write(&path, "[backup]\nhour = 2\n").unwrap();
        let err = format!("{:#}", Config::load(Some(&path), no_env).unwrap_err());
        assert!(
            err.contains("target"),
            "a section without target is refused: {err}"
        );
    }

    #[test]
    fn bad_files_and_addresses_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[listen]\nimapp = \"x\"\n").unwrap();
        let err = format!("{:#}", Config::load(Some(&path), no_env).unwrap_err());
        assert!(err.contains("imapp"), "unknown keys are named: {err}");
        let env = |name: &str| (name == "SEALMAIL_IMAPS_LISTEN").then(|| "localhost".to_string());
        let err = Config::load(None, env).unwrap_err().to_string();
        assert!(err.contains("IMAPS") && err.contains("host:port"), "{err}");
        assert!(Config::load(Some(&dir.path().join("missing.toml")), no_env).is_err());
    }
}
