//! Forwarding to HTTP(S) webhooks: a durable on-disk queue (written before the SMTP `250`) and
//! a worker that POSTs each item, retrying with exponential backoff.
//!
//! Request: `POST <url>` with `Content-Type: application/json`, the body described by
//! [`WebhookPayload`], `X-Sealmail-Signature: sha256=<hex HMAC-SHA256(secret, body)>` and
//! `X-Sealmail-Delivery: <id>` (the same on every retry, so a receiver can drop duplicates).
//! Any 2xx answer completes the item; anything else, or no answer, is retried.
//!
//! Queue items hold message content and the webhook's secret, so each file is encrypted
//! (XChaCha20-Poly1305) under a server-held key in `<data>/webhooks/queue.key`. Unlike the
//! sealed mailbox queue this protects only against someone who gets the queue files without
//! the key file (a copied backup, a stray disk image): the server must be able to read the
//! item to send it. See docs/design-notes.md.

use base64ct::{Base64, Encoding};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sealmail_core::registry::Webhook;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Directory under the data dir.
pub const WEBHOOK_DIR: &str = "webhooks";
const KEY_FILE: &str = "queue.key";
const ITEM_SUFFIX: &str = ".hook";
/// Items that used up their attempts keep their encrypted file under this suffix, for the
/// operator to inspect or retry by renaming.
const FAILED_SUFFIX: &str = ".failed";
const ITEM_MAGIC: &[u8; 6] = b"SMWH1\n";
const NONCE_LEN: usize = 24;

/// Request header carrying the body's HMAC.
pub const SIGNATURE_HEADER: &str = "x-sealmail-signature";
/// Request header carrying the item's id, stable across retries.
pub const DELIVERY_HEADER: &str = "x-sealmail-delivery";

/// Retry and timeout settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Wait before the first retry; doubled after each failure.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Attempts in all (the first one included) before an item is set aside as failed.
    pub max_attempts: u32,
    /// For one request, connection included.
    pub request_timeout: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            initial_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(6 * 3600),
            // About four days with the defaults above.
            max_attempts: 25,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a webhook item could not be queued or sent.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook queue I/O: {0}")]
    Io(#[from] io::Error),
    #[error("webhook queue item {0} does not decrypt or parse")]
    CorruptItem(String),
    #[error("webhook queue key file is malformed")]
    BadKey,
    #[error("webhook URL {0} is not valid")]
    BadUrl(String),
    #[error("webhook request failed: {0}")]
    Request(String),
    #[error("webhook answered HTTP {0}")]
    Status(u16),
}

/// The JSON body POSTed to a webhook.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WebhookPayload {
    /// Same as the `X-Sealmail-Delivery` header.
    pub id: String,
    /// The local address whose forwarding sent this.
    pub recipient: String,
    /// The envelope sender (`MAIL FROM`), empty for bounces.
    pub sender: String,
    /// Unix seconds when the message was accepted.
    pub received_at: i64,
    /// Header fields in message order, values unfolded but not decoded.
    pub headers: Vec<HeaderField>,
    /// Decoded Subject, when present.
    pub subject: Option<String>,
    pub message_id: Option<String>,
    /// The whole message as stored (our trace fields included), base64.
    pub raw: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HeaderField {
    pub name: String,
    pub value: String,
}

/// One queued request, as stored (encrypted) on disk; wiped from memory on drop (it holds
/// the secret and message content).
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct QueueItem {
    url: String,
    /// Hex.
    secret: String,
    body: String,
    attempts: u32,
    next_attempt_ms: u64,
}

/// The durable webhook queue and its sender. Cheap to share behind an [`Arc`].
pub struct WebhookQueue {
    dir: PathBuf,
    cipher: XChaCha20Poly1305,
    config: WebhookConfig,
    /// Wakes the worker when an item is queued.
    queued: Notify,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for WebhookQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookQueue")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl WebhookQueue {
    /// Open (or create) the queue under `<data_dir>/webhooks`, with its key.
    pub fn open(data_dir: &Path, config: WebhookConfig) -> Result<Arc<Self>, WebhookError> {
        let dir = data_dir.join(WEBHOOK_DIR);
        std::fs::create_dir_all(&dir)?;
        let key = load_or_create_key(&dir.join(KEY_FILE))?;
        let cipher =
            XChaCha20Poly1305::new_from_slice(key.as_slice()).map_err(|_| WebhookError::BadKey)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(Arc::clone(&provider))
        {
            Ok(builder) => builder,
            Err(error) => {
                // Plain http:// webhooks still work; https:// ones fail and are retried.
                tracing::warn!(%error, "no system CA certificates: https webhooks cannot be verified");
                let tls = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| WebhookError::Request(format!("TLS setup: {e}")))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
            }
        };
        let connector = builder.https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Arc::new(WebhookQueue {
            dir,
            cipher,
            config,
            queued: Notify::new(),
            client,
        }))
    }

    /// Queue a POST of `message` (as stored, trace fields included) to `webhook`. Blocking
    /// (file write and fsync); returns once the item survives a crash.
    pub fn enqueue(
        &self,
        webhook: &Webhook,
        recipient: &str,
        sender: &str,
        message: &[u8],
    ) -> Result<String, WebhookError> {
        let id = new_id();
        let payload = build_payload(&id, recipient, sender, message);
        let body = serde_json::to_string(&payload)
            .map_err(|e| WebhookError::Request(format!("encoding the payload: {e}")))?;
        let item = QueueItem {
            url: webhook.url.clone(),
            secret: hex::encode(webhook.secret.expose()),
            body,
            attempts: 0,
            next_attempt_ms: 0,
        };
        self.write_item(&id, &item)?;
        self.queued.notify_one();
        Ok(id)
    }

    /// Items waiting to be sent (not counting failed ones).
    pub fn pending(&self) -> Result<usize, WebhookError> {
        Ok(self.item_ids(ITEM_SUFFIX)?.len())
    }

    /// Items that used up their attempts.
    pub fn failed(&self) -> Result<usize, WebhookError> {
        Ok(self.item_ids(FAILED_SUFFIX)?.len())
    }

    /// Send due items until `shutdown` completes; sleeps until the next retry is due or an
    /// item is queued.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let wait = match self.send_due().await {
                Ok(Some(next_ms)) => Duration::from_millis(next_ms.saturating_sub(now_ms())),
                Ok(None) => Duration::from_secs(3600),
                Err(error) => {
                    tracing::warn!(%error, "webhook queue scan failed");
                    Duration::from_secs(5)
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = self.queued.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One pass over the queue: send every due item. Returns when the next one is due.
    async fn send_due(&self) -> Result<Option<u64>, WebhookError> {
        let queue = self.clone_for_blocking();
        let ids = run_blocking(move || queue.item_ids(ITEM_SUFFIX)).await?;
        let mut next_due: Option<u64> = None;
        for id in ids {
            let queue = self.clone_for_blocking();
            let read_id = id.clone();
            let mut item = match run_blocking(move || queue.read_item(&read_id)).await {
                Ok(item) => item,
                Err(error) => {
                    tracing::error!(%error, item = %id, "setting aside an unreadable webhook item");
                    let queue = self.clone_for_blocking();
                    let failed_id = id.clone();
                    run_blocking(move || queue.set_aside(&failed_id)).await?;
                    continue;
                }
            };
            if item.next_attempt_ms > now_ms() {
                next_due =
                    Some(next_due.map_or(item.next_attempt_ms, |n| n.min(item.next_attempt_ms)));
                continue;
            }
            let result = self.send(&id, &item).await;
            let queue = self.clone_for_blocking();
            match result {
                Ok(()) => {
                    tracing::info!(item = %id, "webhook delivered");
                    run_blocking(move || queue.remove_item(&id)).await?;
                }
                Err(error) => {
                    item.attempts += 1;
                    if item.attempts >= self.config.max_attempts {
                        tracing::error!(%error, item = %id, attempts = item.attempts,
                            "webhook failed for good; item set aside");
                        run_blocking(move || queue.set_aside(&id)).await?;
                        continue;
                    }
                    let backoff = backoff(&self.config, item.attempts);
                    item.next_attempt_ms = now_ms() + backoff.as_millis() as u64;
                    tracing::warn!(%error, item = %id, attempts = item.attempts,
                        retry_in_ms = backoff.as_millis() as u64, "webhook failed; will retry");
                    next_due = Some(
                        next_due.map_or(item.next_attempt_ms, |n| n.min(item.next_attempt_ms)),
                    );
                    run_blocking(move || queue.write_item(&id, &item)).await?;
                }
            }
        }
        Ok(next_due)
    }

    async fn send(&self, id: &str, item: &QueueItem) -> Result<(), WebhookError> {
        let secret = Zeroizing::new(
            hex::decode(item.secret.as_str()).map_err(|_| WebhookError::CorruptItem(id.into()))?,
        );
        let signature = sign(&secret, item.body.as_bytes());
        let uri: hyper::Uri = item
            .url
            .parse()
            .map_err(|_| WebhookError::BadUrl(item.url.clone()))?;
        let request = hyper::Request::post(uri)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "sealmail-webhook/1")
            .header(SIGNATURE_HEADER, format!("sha256={signature}"))
            .header(DELIVERY_HEADER, id)
            .body(Full::new(Bytes::from(item.body.clone())))
            .map_err(|e| WebhookError::Request(e.to_string()))?;
        let response = tokio::time::timeout(self.config.request_timeout, async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| WebhookError::Request(e.to_string()))?;
            let status = response.status();
            // Read (and drop) the body so the connection can be reused.
            let _ = response.into_body().collect().await;
            Ok::<_, WebhookError>(status)
        })
        .await
        .map_err(|_| WebhookError::Request("timed out".into()))??;
        if response.is_success() {
            Ok(())
        } else {
            Err(WebhookError::Status(response.as_u16()))
        }
    }

    /// The parts the blocking file work needs (the cipher is cheap to clone).
    fn clone_for_blocking(&self) -> QueueFiles {
        QueueFiles {
            dir: self.dir.clone(),
            cipher: self.cipher.clone(),
        }
    }

    fn write_item(&self, id: &str, item: &QueueItem) -> Result<(), WebhookError> {
        self.clone_for_blocking().write_item(id, item)
    }

    fn item_ids(&self, suffix: &str) -> Result<Vec<String>, WebhookError> {
        self.clone_for_blocking().item_ids(suffix)
    }
}

/// File operations on the queue directory, run on blocking threads.
struct QueueFiles {
    dir: PathBuf,
    cipher: XChaCha20Poly1305,
}

impl QueueFiles {
    fn item_ids(&self, suffix: &str) -> Result<Vec<String>, WebhookError> {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(suffix))
                && is_valid_id(id)
            {
                ids.push(id.to_string());
            }
        }
        // Ids start with the time: oldest first.
        ids.sort();
        Ok(ids)
    }

    /// Encrypt and write atomically: temp file, fsync, rename, directory fsync.
    fn write_item(&self, id: &str, item: &QueueItem) -> Result<(), WebhookError> {
        let plain = Zeroizing::new(
            serde_json::to_vec(item).map_err(|_| WebhookError::CorruptItem(id.into()))?,
        );
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| WebhookError::CorruptItem(id.into()))?;
        let temp = self.dir.join(format!("{id}.tmp"));
        {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(ITEM_MAGIC)?;
            file.write_all(&nonce)?;
            file.write_all(&sealed)?;
            file.sync_all()?;
        }
        std::fs::rename(&temp, self.item_path(id))?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    fn read_item(&self, id: &str) -> Result<QueueItem, WebhookError> {
        let bytes = std::fs::read(self.item_path(id))?;
        let corrupt = || WebhookError::CorruptItem(id.into());
        let rest = bytes
            .strip_prefix(ITEM_MAGIC.as_slice())
            .ok_or_else(corrupt)?;
        if rest.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let plain = Zeroizing::new(
            self.cipher
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: sealed,
                        aad: id.as_bytes(),
                    },
                )
                .map_err(|_| corrupt())?,
        );
        serde_json::from_slice(&plain).map_err(|_| corrupt())
    }

    fn remove_item(&self, id: &str) -> Result<(), WebhookError> {
        std::fs::remove_file(self.item_path(id))?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    fn set_aside(&self, id: &str) -> Result<(), WebhookError> {
        std::fs::rename(
            self.item_path(id),
            self.dir.join(format!("{id}{FAILED_SUFFIX}")),
        )?;
        Ok(())
    }

    fn item_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}{ITEM_SUFFIX}"))
    }
}

/// HMAC-SHA256 of `body` under `secret`, lowercase hex: what `X-Sealmail-Signature` carries
/// after `sha256=`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Check a received `X-Sealmail-Signature` value in constant time (for receivers written in
/// Rust, and for our tests).
pub fn verify_signature(secret: &[u8], body: &[u8], header_value: &str) -> bool {
    use subtle::ConstantTimeEq;
    let Some(hex_mac) = header_value.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(received) = hex::decode(hex_mac) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    received.len() == expected.len() && bool::from(expected.as_slice().ct_eq(&received))
}

/// Wait before attempt `attempts + 1`: `initial * 2^(attempts - 1)`, capped.
fn backoff(config: &WebhookConfig, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(20);
    config
        .initial_backoff
        .saturating_mul(factor)
        .min(config.max_backoff)
}

fn build_payload(id: &str, recipient: &str, sender: &str, message: &[u8]) -> WebhookPayload {
    let parsed = mail_parser::MessageParser::default().parse_headers(message);
    let (headers, subject, message_id) = match &parsed {
        Some(parsed) => (
            parsed
                .headers_raw()
                .map(|(name, value)| HeaderField {
                    name: name.to_string(),
                    value: unfold(value),
                })
                .collect(),
            parsed.subject().map(str::to_string),
            parsed.message_id().map(str::to_string),
        ),
        None => (Vec::new(), None, None),
    };
    WebhookPayload {
        id: id.to_string(),
        recipient: recipient.to_string(),
        sender: sender.to_string(),
        received_at: sealmail_core::time::now_unix(),
        headers,
        subject,
        message_id,
        raw: Base64::encode_string(message),
    }
}

/// A header value on one line: folding CRLFs removed, surrounding whitespace trimmed.
fn unfold(value: &str) -> String {
    value
        .replace("\r\n", "")
        .replace('\n', "")
        .trim()
        .to_string()
}

/// `<unix ms, 13 hex>-<16 random hex>`: sortable by time, unguessable.
fn new_id() -> String {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("the OS random source works");
    format!("{:013x}-{}", now_ms(), hex::encode(random))
}

fn is_valid_id(id: &str) -> bool {
    id.len() == 30
        && id.as_bytes()[13] == b'-'
        && id
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 13 || b.is_ascii_hexdigit())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The queue key: 32 random bytes in a 0600 file, created on first use.
fn load_or_create_key(path: &Path) -> Result<Zeroizing<Vec<u8>>, WebhookError> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() == 32 => return Ok(Zeroizing::new(bytes)),
        Ok(_) => return Err(WebhookError::BadKey),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let mut key = Zeroizing::new(vec![0u8; 32]);
    getrandom::fill(&mut key).map_err(|e| io::Error::other(e.to_string()))?;
    let temp = path.with_extension("tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(&key)?;
        file.sync_all()?;
    }
    // Another process may have won the race; theirs is used then.
    match std::fs::hard_link(&temp, path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&temp);
            return load_or_create_key(path);
        }
        Err(e) => return Err(e.into()),
    }
    let _ = std::fs::remove_file(&temp);
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(key)
}

async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, WebhookError> + Send + 'static,
) -> Result<T, WebhookError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(WebhookError::Io(io::Error::other("runtime shutting down"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealmail_core::registry::WebhookSecret;

    #[test]
    fn signature_round_trips_and_rejects_tampering() {
        let signature = format!("sha256={}", sign(b"key", b"{\"a\":1}"));
        assert!(verify_signature(b"key", b"{\"a\":1}", &signature));
        assert!(!verify_signature(b"key", b"{\"a\":2}", &signature));
        assert!(!verify_signature(b"other", b"{\"a\":1}", &signature));
        assert!(!verify_signature(b"key", b"{\"a\":1}", "sha256=zz"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let config = WebhookConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            ..WebhookConfig::default()
        };
        let waits: Vec<u64> = (1..=6).map(|n| backoff(&config, n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
    }

    #[tokio::test]
    async fn items_are_encrypted_on_disk_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let queue = WebhookQueue::open(dir.path(), WebhookConfig::default()).unwrap();
        let webhook = Webhook {
            url: "http://127.0.0.1:9/hook".into(),
            secret: WebhookSecret::new(b"hook-secret".to_vec()).unwrap(),
        };
        let message = b"Subject: =?utf-8?q?caf=C3=A9?=\r\nMessage-ID: <m1@x.test>\r\n\
            X-Folded: one\r\n two\r\n\r\nSECRET-BODY-MARKER\r\n";
        let id = queue
            .enqueue(&webhook, "a@example.test", "s@remote.test", message)
            .unwrap();
        assert_eq!(queue.pending().unwrap(), 1);
        let raw = std::fs::read(dir.path().join(WEBHOOK_DIR).join(format!("{id}.hook"))).unwrap();
        for needle in [&b"SECRET-BODY-MARKER"[..], b"hook-secret", b"127.0.0.1"] {
            assert!(
                !raw.windows(needle.len()).any(|w| w == needle),
                "plaintext on disk"
            );
        }
        let reopened = WebhookQueue::open(dir.path(), WebhookConfig::default()).unwrap();
        let item = reopened.clone_for_blocking().read_item(&id).unwrap();
        let payload: WebhookPayload = serde_json::from_str(&item.body).unwrap();
        assert_eq!(payload.id, id);
        assert_eq!(payload.subject.as_deref(), Some("café"));
        assert_eq!(payload.message_id.as_deref(), Some("m1@x.test"));
        assert!(payload.headers.contains(&HeaderField {
            name: "X-Folded".into(),
            value: "one two".into()
        }));
        assert_eq!(Base64::decode_vec(&payload.raw).unwrap(), message);
        // A file moved under another id does not decrypt (the id is authenticated).
        let other = "0000000000000-0000000000000000";
        std::fs::copy(
            reopened.clone_for_blocking().item_path(&id),
            reopened.clone_for_blocking().item_path(other),
        )
        .unwrap();
        assert!(matches!(
            reopened.clone_for_blocking().read_item(other),
            Err(WebhookError::CorruptItem(_))
        ));
    }
}
