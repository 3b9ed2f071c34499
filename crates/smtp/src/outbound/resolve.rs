//! Where to send mail for a domain (RFC 5321 5.1): its MX hosts by preference, or, when it has
//! no MX record, the domain itself (the implicit MX) by its A/AAAA records. A null MX
//! (RFC 7505: one MX of "." ) means the domain takes no mail.
//!
//! DNS goes through mail-auth's resolver (hickory), so one resolver serves verification and
//! relaying, and tests point it at a stub on 127.0.0.1.

use mail_auth::common::cache::NoCache;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::{DnsError, MX, MessageAuthenticator, RecordSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Why a domain's mail cannot be routed now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The domain does not exist, or publishes a null MX: bounce.
    #[error("{0}")]
    Permanent(String),
    /// DNS failed (timeout, SERVFAIL): retry later.
    #[error("{0}")]
    Temporary(String),
}

/// A DNS client for MX and address lookups.
#[derive(Clone)]
pub struct MxResolver {
    dns: MessageAuthenticator,
}

impl std::fmt::Debug for MxResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MxResolver").finish_non_exhaustive()
    }
}

impl MxResolver {
    /// Query `nameservers` (UDP, then TCP for truncated answers); with none, the system's
    /// resolver configuration (/etc/resolv.conf).
    pub fn new(nameservers: &[SocketAddr]) -> std::io::Result<Self> {
        let dns = if nameservers.is_empty() {
            // Without a usable /etc/resolv.conf the server still starts: relayed mail then
            // waits in the queue (DNS failures are temporary) until the configuration is fixed.
            MessageAuthenticator::new_system_conf().or_else(|error| {
                tracing::warn!(%error, "no system DNS configuration; outbound mail will wait");
                MessageAuthenticator::new(
                    ResolverConfig::from_name_servers(Vec::new()),
                    ResolverOpts::default(),
                )
            })
        } else {
            let servers = nameservers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            let mut options = ResolverOpts::default();
            options.timeout = Duration::from_secs(5);
            options.attempts = 2;
            MessageAuthenticator::new(ResolverConfig::from_name_servers(servers), options)
        }
        .map_err(|e| std::io::Error::other(format!("DNS resolver: {e}")))?;
        Ok(MxResolver { dns })
    }

    /// The resolver, for DKIM/SPF verification over the same nameservers.
    pub fn authenticator(&self) -> &MessageAuthenticator {
        &self.dns
    }

    /// The hosts to try for `domain`, best first.
    pub async fn mail_hosts(&self, domain: &str) -> Result<Vec<String>, ResolveError> {
        let domain = domain.trim_end_matches('.');
        match self
            .dns
            .mx_lookup(domain, None::<&NoCache<Box<str>, RecordSet<MX>>>)
            .await
        {
            Ok(records) => {
                let hosts: Vec<String> = records
                    .rrset
                    .iter()
                    .flat_map(|mx| mx.exchanges.iter())
                    .map(|host| host.trim_end_matches('.').to_string())
                    .collect();
                if hosts.is_empty() {
                    return Ok(vec![domain.to_string()]);
                }
                if hosts.len() == 1 && hosts[0].is_empty() {
                    return Err(ResolveError::Permanent(format!(
                        "{domain} accepts no mail (null MX, RFC 7505)"
                    )));
                }
                Ok(hosts.into_iter().filter(|h| !h.is_empty()).collect())
            }
            // No MX: the domain itself is the implicit MX (RFC 5321 5.1). NXDOMAIN shows up
            // again, as permanent, when its addresses are looked up.
            Err(mail_auth::Error::Dns(DnsError::RecordNotFound(_))) => Ok(vec![domain.to_string()]),
            Err(e) => Err(ResolveError::Temporary(format!(
                "MX lookup for {domain} failed: {e}"
            ))),
        }
    }

    /// The addresses of `host`: IPv4 first, then IPv6.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
            return Ok(vec![ip]);
        }
        let mut addresses = Vec::new();
        let mut not_found = 0;
        let mut temporary = None;
        match self
            .dns
            .ipv4_lookup(host, None::<&NoCache<Box<str>, RecordSet<Ipv4Addr>>>)
            .await
        {
            Ok(set) => addresses.extend(set.rrset.iter().copied().map(IpAddr::from)),
            Err(mail_auth::Error::Dns(DnsError::RecordNotFound(_))) => not_found += 1,
            Err(e) => temporary = Some(e.to_string()),
        }
        match self
            .dns
            .ipv6_lookup(host, None::<&NoCache<Box<str>, RecordSet<Ipv6Addr>>>)
            .await
        {
            Ok(set) => addresses.extend(set.rrset.iter().copied().map(IpAddr::from)),
            Err(mail_auth::Error::Dns(DnsError::RecordNotFound(_))) => not_found += 1,
            Err(e) => temporary = temporary.or(Some(e.to_string())),
        }
        if !addresses.is_empty() {
            return Ok(addresses);
        }
        match temporary {
            Some(error) => Err(ResolveError::Temporary(format!(
                "address lookup for {host} failed: {error}"
            ))),
            None if not_found == 2 => Err(ResolveError::Permanent(format!(
                "{host} has no address records"
            ))),
            None => Err(ResolveError::Temporary(format!("{host}: no addresses"))),
        }
    }
}
