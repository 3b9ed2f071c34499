//! sealmail-smtp: the MX listener (mail from other servers for local addresses, sealed to
//! recipients who are offline) and the submission listener (mail from our own authenticated
//! users).
//!
//! Layers, as in every protocol crate: [`proto`] (command parser, reply encoder, message text,
//! no I/O) -> [`session`] (the state machine, no I/O) -> [`server`] (the tokio driver with TLS),
//! plus [`delivery`], which connects accepted mail to `sealmail-core`: [`authentication`]
//! (SPF/DKIM/ARC/DMARC), forwarding to [`webhook`]s and through the [`relay`] seam, and
//! [`rate_limit`]s; [`outbound`], the durable relay queue for mail to other domains, and
//! [`dkim`], the per-domain signing keys.
#![forbid(unsafe_code)]

pub mod authentication;
pub mod delivery;
pub mod dkim;
pub mod outbound;
pub mod proto;
pub mod rate_limit;
pub mod relay;
pub mod server;
pub mod session;
pub mod webhook;

pub use authentication::{DnsResolver, InboundAuthConfig, InboundAuthenticator};
pub use delivery::LocalDelivery;
pub use dkim::{DkimAlgorithm, DkimKeys, DkimRecord};
pub use outbound::{OutboundConfig, OutboundError, OutboundQueue};
pub use rate_limit::{Rate, RateLimits};
pub use relay::{Relay, RelayError};
pub use server::{ServerConfig, TlsSettings, run};
pub use session::{Mode, SessionConfig};
pub use webhook::{WebhookConfig, WebhookQueue};
