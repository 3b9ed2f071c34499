//! Inbound message authentication: SPF (RFC 7208), DKIM (RFC 6376), ARC (RFC 8617) and DMARC
//! (RFC 7489) with the `mail-auth` crate, summed up in an `Authentication-Results:` header
//! field (RFC 8601) that is prepended to the stored message.
//!
//! DMARC `p=reject` is honoured with `550 5.7.1` when the configuration says so. `p=quarantine`
//! delivers to the inbox with `X-Spam-Flag: YES` added (sealed mail carries no folder or flags
//! yet, and mail clients' junk filters act on that header); the Authentication-Results field
//! says why.

use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, AuthenticationResults, DmarcResult, MessageAuthenticator};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Where DNS questions (TXT for SPF, DKIM keys and DMARC; A/AAAA/MX for SPF mechanisms) go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DnsResolver {
    /// The operating system's configuration (`/etc/resolv.conf`).
    #[default]
    System,
    /// These servers, over UDP with TCP fallback.
    Nameservers(Vec<SocketAddr>),
    /// DNS over HTTPS (RFC 8484) to a server at `address` presenting a certificate for
    /// `server_name`, e.g. `1.1.1.1:443` and `cloudflare-dns.com`.
    DnsOverHttps {
        address: SocketAddr,
        server_name: String,
        path: String,
    },
}

/// Settings of the inbound checks.
#[derive(Debug, Clone)]
pub struct InboundAuthConfig {
    pub resolver: DnsResolver,
    /// Refuse (`550 5.7.1`) mail that fails DMARC from a domain publishing `p=reject`.
    /// Off, such mail is delivered with the failure recorded in Authentication-Results.
    pub honor_dmarc_reject: bool,
    /// Per DNS question.
    pub dns_timeout: Duration,
}

impl Default for InboundAuthConfig {
    fn default() -> Self {
        InboundAuthConfig {
            resolver: DnsResolver::System,
            honor_dmarc_reject: true,
            dns_timeout: Duration::from_secs(5),
        }
    }
}

/// The resolver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum InboundAuthError {
    #[error("DNS resolver configuration: {0}")]
    Resolver(String),
}

/// What the checks concluded about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthVerdict {
    /// `Authentication-Results: ...` (and `X-Spam-Flag: YES` when quarantined), each
    /// CRLF-terminated, to prepend to the message.
    pub header: String,
    pub disposition: Disposition,
}

/// What DMARC policy, as configured, asks of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Accept,
    /// Delivered, flagged as junk.
    Quarantine,
    /// Refused with `550 5.7.1`.
    Reject,
}

/// Runs the checks; one instance (and its DNS cache) is shared by every MX connection.
#[derive(Clone)]
pub struct InboundAuthenticator {
    authenticator: Arc<MessageAuthenticator>,
    /// The authserv-id of our Authentication-Results fields (RFC 8601 2.5).
    hostname: Arc<str>,
    honor_dmarc_reject: bool,
}

impl std::fmt::Debug for InboundAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundAuthenticator")
            .field("hostname", &self.hostname)
            .field("honor_dmarc_reject", &self.honor_dmarc_reject)
            .finish_non_exhaustive()
    }
}

impl InboundAuthenticator {
    /// `hostname` is our name, used as the authserv-id.
    pub fn new(config: &InboundAuthConfig, hostname: &str) -> Result<Self, InboundAuthError> {
        let (resolver_config, mut options) = match &config.resolver {
            DnsResolver::System => mail_auth::hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| InboundAuthError::Resolver(e.to_string()))?,
            DnsResolver::Nameservers(servers) => {
                if servers.is_empty() {
                    return Err(InboundAuthError::Resolver(
                        "no nameserver addresses given".into(),
                    ));
                }
                let servers = servers
                    .iter()
                    .map(|server| {
                        let mut udp = ConnectionConfig::udp();
                        udp.port = server.port();
                        let mut tcp = ConnectionConfig::tcp();
                        tcp.port = server.port();
                        NameServerConfig::new(server.ip(), true, vec![udp, tcp])
                    })
                    .collect();
                (
                    ResolverConfig::from_name_servers(servers),
                    ResolverOpts::default(),
                )
            }
            DnsResolver::DnsOverHttps {
                address,
                server_name,
                path,
            } => {
                let mut https = ConnectionConfig::https(
                    server_name.as_str().into(),
                    Some(path.as_str().into()),
                );
                https.port = address.port();
                (
                    ResolverConfig::from_name_servers(vec![NameServerConfig::new(
                        address.ip(),
                        true,
                        vec![https],
                    )]),
                    ResolverOpts::default(),
                )
            }
        };
        options.timeout = config.dns_timeout;
        options.attempts = 2;
        let authenticator = MessageAuthenticator::new(resolver_config, options)
            .map_err(|e| InboundAuthError::Resolver(e.to_string()))?;
        Ok(InboundAuthenticator {
            authenticator: Arc::new(authenticator),
            hostname: hostname.into(),
            honor_dmarc_reject: config.honor_dmarc_reject,
        })
    }

    /// Check `message` as received from `peer`, which said `helo` and `MAIL FROM:<mail_from>`
    /// (empty for bounces).
    pub async fn verify(
        &self,
        peer: IpAddr,
        helo: &str,
        mail_from: &str,
        message: &[u8],
    ) -> AuthVerdict {
        let authenticator = &self.authenticator;
        let hostname: &str = &self.hostname;
        let spf = authenticator
            .verify_spf(SpfParameters::verify(peer, helo, hostname, mail_from))
            .await;
        let results = AuthenticationResults::new(hostname);
        let results = if mail_from.is_empty() {
            results.with_spf_ehlo_result(&spf, peer, helo)
        } else {
            results.with_spf_mailfrom_result(&spf, peer, mail_from, helo)
        };
        let Some(parsed) = AuthenticatedMessage::parse(message) else {
            // Not even a header section: nothing to verify beyond SPF.
            return AuthVerdict {
                header: results.to_header(),
                disposition: Disposition::Accept,
            };
        };
        let dkim = authenticator.verify_dkim(&parsed).await;
        let arc = authenticator.verify_arc(&parsed).await;
        let mail_from_domain = mail_from
            .rsplit_once('@')
            .map_or(helo, |(_, domain)| domain);
        let dmarc = authenticator
            .verify_dmarc(DmarcParameters::new(&parsed, &dkim, mail_from_domain, &spf))
            .await;
        let results = results
            .with_dkim_results(&dkim, parsed.from())
            .with_arc_result(&arc, peer)
            .with_dmarc_result(&dmarc);
        // Neither SPF nor DKIM passed aligned, and the domain has a DMARC record.
        let failed = matches!(dmarc.result(), DmarcResult::Fail(_));
        let disposition = match dmarc.policy() {
            Policy::Reject if failed && self.honor_dmarc_reject => Disposition::Reject,
            Policy::Reject | Policy::Quarantine if failed => Disposition::Quarantine,
            _ => Disposition::Accept,
        };
        // RFC 6376 6.1.3: a body hash mismatch is a failed verification (PERMFAIL), which
        // RFC 8601 2.7.1 reports as `fail`; mail-auth 0.13 writes `neutral` (its result has no
        // public constructor that keeps the signature, so the field is corrected here).
        let mut header = results.to_header().replace(
            "dkim=neutral (body hash did not verify)",
            "dkim=fail (body hash did not verify)",
        );
        if disposition == Disposition::Quarantine {
            header.push_str("X-Spam-Flag: YES\r\n");
        }
        AuthVerdict {
            header,
            disposition,
        }
    }

    /// Our authserv-id.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }
}

/// `message` without `Authentication-Results:` fields that carry our authserv-id: RFC 8601 5
/// has a receiver remove them, since only we may write them and a sender could forge one.
pub fn strip_own_results<'a>(message: &'a [u8], hostname: &str) -> std::borrow::Cow<'a, [u8]> {
    let header_end = find_header_end(message);
    let mut kept = Vec::new();
    let mut removed_any = false;
    let mut position = 0;
    while position < header_end {
        // One field: its first line and any folded continuation lines.
        let mut end = next_line(message, position, header_end);
        while end < header_end && matches!(message[end], b' ' | b'\t') {
            end = next_line(message, end, header_end);
        }
        let field = &message[position..end];
        if is_own_results(field, hostname) {
            removed_any = true;
        } else {
            kept.extend_from_slice(field);
        }
        position = end;
    }
    if !removed_any {
        return std::borrow::Cow::Borrowed(message);
    }
    kept.extend_from_slice(&message[header_end..]);
    std::borrow::Cow::Owned(kept)
}

/// Offset of the blank line that ends the header section (or the end of the message).
fn find_header_end(message: &[u8]) -> usize {
    let mut position = 0;
    while position < message.len() {
        if message[position..].starts_with(b"\r\n") {
            return position;
        }
        position = next_line(message, position, message.len());
    }
    message.len()
}

fn next_line(message: &[u8], from: usize, limit: usize) -> usize {
    message[from..limit]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(limit, |lf| from + lf + 1)
}

fn is_own_results(field: &[u8], hostname: &str) -> bool {
    const NAME: &[u8] = b"authentication-results:";
    if field.len() < NAME.len() || !field[..NAME.len()].eq_ignore_ascii_case(NAME) {
        return false;
    }
    let value = String::from_utf8_lossy(&field[NAME.len()..]);
    // authserv-id is the first token of the value, before `;` or a version number.
    let id = value
        .trim_start()
        .split([';', ' ', '\t', '\r', '\n'])
        .next()
        .unwrap_or("");
    id.eq_ignore_ascii_case(hostname)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_our_own_results_fields_from_the_header_section() {
        let message = b"Authentication-Results: mx.example.test;\r\n\tspf=pass\r\n\
            Subject: hi\r\n\
            authentication-results: other.test; dkim=pass\r\n\
            AUTHENTICATION-RESULTS:   MX.EXAMPLE.TEST 1; dmarc=pass\r\n\
            \r\n\
            Authentication-Results: mx.example.test; in the body\r\n";
        let stripped = strip_own_results(message, "mx.example.test");
        assert_eq!(
            String::from_utf8_lossy(&stripped),
            "Subject: hi\r\nauthentication-results: other.test; dkim=pass\r\n\r\n\
             Authentication-Results: mx.example.test; in the body\r\n"
        );
        let untouched = b"Subject: x\r\n\r\nbody\r\n";
        assert!(matches!(
            strip_own_results(untouched, "mx.example.test"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn an_empty_nameserver_list_is_refused() {
        let config = InboundAuthConfig {
            resolver: DnsResolver::Nameservers(Vec::new()),
            ..InboundAuthConfig::default()
        };
        assert!(matches!(
            InboundAuthenticator::new(&config, "mx.test"),
            Err(InboundAuthError::Resolver(_))
        ));
    }
}
