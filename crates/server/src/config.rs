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
//! submissions = "127.0.0.1:1465" # authenticated submission, implicit TLS (RFC 8314)
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
//! [outbound]                   # relaying authenticated submissions to other domains
//! relay = true                 # false: submission only to local addresses
//! port = 25                    # remote MX port
//! require_tls = false          # true: never send without STARTTLS and a certificate valid
//!                              # for the MX host (retry, then bounce); false: opportunistic
//!                              # TLS, any certificate accepted (RFC 7435)
//! extra_ca_file = "ca.pem"     # roots trusted besides the system's when require_tls is set
//! nameservers = []             # "ip:port" list; empty: /etc/resolv.conf
//! max_lifetime_secs = 432000   # bounce after 5 days without success
//! first_retry_secs = 300       # then doubling...
//! max_retry_interval_secs = 14400 # ...up to 4 hours
//! timeout_secs = 300
//! delay_notice_secs = 14400    # one "delayed" DSN after 4 hours undelivered; 0: never
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
    /// SMTP submission over implicit TLS (port 465 style).
    pub submissions: Option<SocketAddr>,
    pub outbound: OutboundSettings,
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
    /// `[smtp.inbound]`: checks, limits and forwarding on the MX.
    pub inbound: SmtpInbound,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            hostname: "localhost".into(),
            max_message_size: 25 * 1024 * 1024,
            allow_plaintext_auth_from_loopback: true,
            inbound: SmtpInbound::default(),
        }
    }
}

/// `[smtp.inbound]`: SPF/DKIM/ARC/DMARC verification, rate limits and webhook retries.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpInbound {
    /// Verify SPF, DKIM, ARC and DMARC and record an Authentication-Results field.
    pub verify: bool,
    /// Refuse (550 5.7.1) mail failing DMARC from domains publishing `p=reject`; when false
    /// it is delivered flagged as junk, like `p=quarantine`.
    pub dmarc_reject: bool,
    /// DNS servers (`ip:port`) for the checks; empty means the system resolver.
    pub nameservers: Vec<SocketAddr>,
    /// DNS over HTTPS instead: the server's `ip:port` and certificate name, e.g.
    /// `"1.1.1.1:443"` and `"cloudflare-dns.com"`.
    pub doh_address: Option<SocketAddr>,
    pub doh_server_name: Option<String>,
    pub doh_path: String,
    /// New connections per client IP (IPv6: per /64) per minute; 0 turns the limit off.
    pub connections_per_ip_per_minute: u32,
    /// Messages per recipient address per hour; 0 turns the limit off.
    pub messages_per_recipient_per_hour: u32,
    /// Webhook forwarding: first retry after this many seconds, doubling after each failure.
    pub webhook_initial_backoff_secs: u64,
    /// Webhook forwarding: attempts before an item is set aside as failed.
    pub webhook_max_attempts: u32,
}

impl Default for SmtpInbound {
    fn default() -> Self {
        Self {
            verify: true,
            dmarc_reject: true,
            nameservers: Vec::new(),
            doh_address: None,
            doh_server_name: None,
            doh_path: "/dns-query".into(),
            connections_per_ip_per_minute: 60,
            messages_per_recipient_per_hour: 300,
            webhook_initial_backoff_secs: 30,
            webhook_max_attempts: 25,
        }
    }
}

impl SmtpInbound {
    /// The resolver the inbound checks use.
    pub fn resolver(&self) -> Result<sealmail_smtp::DnsResolver> {
        match (&self.doh_address, &self.doh_server_name) {
            (Some(address), Some(server_name)) => Ok(sealmail_smtp::DnsResolver::DnsOverHttps {
                address: *address,
                server_name: server_name.clone(),
                path: self.doh_path.clone(),
            }),
            (None, None) if self.nameservers.is_empty() => Ok(sealmail_smtp::DnsResolver::System),
            (None, None) => Ok(sealmail_smtp::DnsResolver::Nameservers(
                self.nameservers.clone(),
            )),
            _ => bail!("[smtp.inbound] doh_address and doh_server_name go together"),
        }
    }

    pub fn rate_limits(&self) -> sealmail_smtp::RateLimits {
        let rate = |count: u32, secs: u64| {
            (count > 0).then_some(sealmail_smtp::Rate {
                count,
                per: std::time::Duration::from_secs(secs),
            })
        };
        sealmail_smtp::RateLimits {
            connections_per_ip: rate(self.connections_per_ip_per_minute, 60),
            messages_per_recipient: rate(self.messages_per_recipient_per_hour, 3600),
        }
    }
}

/// The outbound relay (see the module documentation for the keys).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundSettings {
    pub relay: bool,
    pub port: u16,
    pub require_tls: bool,
    /// PEM roots trusted besides the system's for `require_tls` (a private CA).
    pub extra_ca_file: Option<PathBuf>,
    pub nameservers: Vec<SocketAddr>,
    pub max_lifetime_secs: u64,
    pub first_retry_secs: u64,
    pub max_retry_interval_secs: u64,
    pub timeout_secs: u64,
    /// After this long undelivered, the sender gets one `delayed` DSN; 0: never.
    pub delay_notice_secs: u64,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            relay: true,
            port: 25,
            require_tls: false,
            extra_ca_file: None,
            nameservers: Vec::new(),
            max_lifetime_secs: 5 * 24 * 3600,
            first_retry_secs: 5 * 60,
            max_retry_interval_secs: 4 * 3600,
            timeout_secs: 5 * 60,
            delay_notice_secs: 4 * 3600,
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
    outbound: OutboundSettings,
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
    submissions: Option<String>,
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
pub const DEFAULT_SUBMISSIONS: &str = "127.0.0.1:1465";
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
            submissions: listener("SUBMISSIONS", file.listen.submissions, DEFAULT_SUBMISSIONS)?,
            outbound: file.outbound,
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
        assert_eq!(
            config.submissions,
            Some(DEFAULT_SUBMISSIONS.parse().unwrap())
        );
        assert!(config.outbound.relay && !config.outbound.require_tls);
        assert_eq!(config.outbound.extra_ca_file, None);
        assert_eq!(config.outbound.port, 25);
        assert_eq!(config.outbound.max_lifetime_secs, 5 * 24 * 3600);
    }

    #[test]
    fn submissions_and_outbound_from_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealmail.toml");
        std::fs::write(
            &path,
            "[listen]\nsubmissions = \"0.0.0.0:465\"\n[outbound]\nport = 2626\nrequire_tls = true\n\
             nameservers = [\"127.0.0.1:5353\"]\nfirst_retry_secs = 1\n\
             extra_ca_file = \"/etc/sealmail/private-ca.pem\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), no_env).unwrap();
        assert_eq!(config.submissions, Some("0.0.0.0:465".parse().unwrap()));
        assert_eq!(config.outbound.port, 2626);
        assert!(config.outbound.require_tls);
        assert_eq!(
            config.outbound.extra_ca_file.as_deref(),
            Some(Path::new("/etc/sealmail/private-ca.pem"))
        );
        assert_eq!(
            config.outbound.nameservers,
            vec!["127.0.0.1:5353".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(config.outbound.first_retry_secs, 1);
        assert_eq!(
            config.outbound.timeout_secs, 300,
            "unset keys keep defaults"
        );
        let env = |name: &str| (name == "SEALMAIL_SUBMISSIONS_LISTEN").then(|| "off".to_string());
        assert_eq!(Config::load(Some(&path), env).unwrap().submissions, None);
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
    fn smtp_inbound_settings_from_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealmail.toml");
        std::fs::write(
            &path,
            "[smtp.inbound]\ndmarc_reject = false\nnameservers = [\"127.0.0.1:5353\"]\n\
             connections_per_ip_per_minute = 0\nmessages_per_recipient_per_hour = 20\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), no_env).unwrap();
        let inbound = &config.smtp_settings.inbound;
        assert!(inbound.verify && !inbound.dmarc_reject);
        assert_eq!(
            inbound.resolver().unwrap(),
            sealmail_smtp::DnsResolver::Nameservers(vec!["127.0.0.1:5353".parse().unwrap()])
        );
        let limits = inbound.rate_limits();
        assert_eq!(limits.connections_per_ip, None, "0 turns a limit off");
        assert_eq!(
            limits
                .messages_per_recipient
                .map(|r| (r.count, r.per.as_secs())),
            Some((20, 3600))
        );
        assert_eq!(
            SmtpInbound::default().resolver().unwrap(),
            sealmail_smtp::DnsResolver::System
        );
        let half_doh = SmtpInbound {
            doh_address: Some("1.1.1.1:443".parse().unwrap()),
            ..SmtpInbound::default()
        };
        assert!(half_doh.resolver().is_err());
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
