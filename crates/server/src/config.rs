//! `sealmail serve` configuration: a TOML file (`--config`), then `SEALMAIL_<NAME>_LISTEN`
//! environment overrides, then built-in defaults that work at once on 127.0.0.1.
//!
//! ```toml
//! [listen]
//! imap = "127.0.0.1:1143"      # plain with STARTTLS; "" disables a listener
//! imaps = "127.0.0.1:1993"     # implicit TLS
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
    /// Prometheus metrics (`GET /metrics`), plain HTTP: keep it on loopback or a private network.
    pub metrics: Option<SocketAddr>,
    pub tls: TlsFiles,
    pub imap_limits: ImapLimits,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ListenSection {
    imap: Option<String>,
    imaps: Option<String>,
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
            metrics: listener("METRICS", file.listen.metrics, DEFAULT_METRICS)?,
            tls: TlsFiles {
                cert: file.tls.cert,
                key: file.tls.key,
            },
            imap_limits: file.imap,
        })
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
        assert_eq!(config.tls, TlsFiles::default());
    }

    #[test]
    fn file_then_environment_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealmail.toml");
        std::fs::write(
            &path,
            "[listen]\nimap = \"0.0.0.0:143\"\nimaps = \"\"\n[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n\
             [imap]\nmax_connections = 7\n",
        )
        .unwrap();
        let env =
            |name: &str| (name == "SEALMAIL_IMAP_LISTEN").then(|| "127.0.0.1:2143".to_string());
        let config = Config::load(Some(&path), env).unwrap();
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
