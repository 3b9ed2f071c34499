//! The key hierarchy: Argon2id turns a password (or recovery code) and a salt into a
//! key-encryption key (KEK), and XChaCha20-Poly1305 under that KEK wraps the mailbox data key.
//! A successful unwrap is the password check: nothing else about the password is stored.

use super::MailboxId;
use crate::error::{Error, Result};
use crate::key::{KEY_LEN, MailboxKey, random_bytes};
use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{Key, KeyInit, Tag, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Length of every Argon2id salt the registry stores.
pub const SALT_LEN: usize = 16;

/// Argon2id cost parameters, stored per account so they can be raised for new passwords
/// without breaking old ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Degree of parallelism (lanes).
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// OWASP's recommended Argon2id minimum: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Self {
            m_cost_kib: 19_456,
            t_cost: 2,
            p_cost: 1,
        }
    }
}

/// Upper bounds that keep a damaged or hostile registry row from making one login allocate
/// gigabytes or spin for minutes.
const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
const MAX_T_COST: u32 = 64;
const MAX_P_COST: u32 = 64;

impl KdfParams {
    /// The smallest parameters Argon2 accepts. Only for tests: it offers no protection.
    pub const INSECURE_FOR_TESTS: Self = Self {
        m_cost_kib: 8,
        t_cost: 1,
        p_cost: 1,
    };

    /// The Argon2 parameter set, or [`Error::InvalidArgument`] when out of range.
    fn argon2_params(&self) -> Result<Params> {
        if self.m_cost_kib > MAX_M_COST_KIB || self.t_cost > MAX_T_COST || self.p_cost > MAX_P_COST
        {
            return Err(Error::InvalidArgument(format!(
                "KDF parameters {self:?} exceed the supported maximum"
            )));
        }
        Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(KEY_LEN))
            .map_err(|e| Error::InvalidArgument(format!("KDF parameters {self:?}: {e}")))
    }

    /// Check the parameters without deriving anything.
    pub fn validate(&self) -> Result<()> {
        self.argon2_params().map(|_| ())
    }
}

/// A key-encryption key, wiped on drop.
pub(crate) struct Kek(Zeroizing<[u8; KEY_LEN]>);

/// Argon2id(secret, salt) with `params`. This is the deliberately slow step of a login.
pub(crate) fn derive_kek(secret: &[u8], salt: &[u8], params: &KdfParams) -> Result<Kek> {
    let params = params.argon2_params()?;
    let blocks = params.block_count();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut kek = Zeroizing::new([0u8; KEY_LEN]);
    super::kdf_memory::with_kdf_memory(blocks, |memory| {
        argon2.hash_password_into_with_memory(secret, salt, &mut kek[..], memory)
    })
    .map_err(|_| Error::Crypto("Argon2id key derivation failed"))?;
    Ok(Kek(kek))
}

/// Format version of a wrapped key; the first byte of the blob and part of the AAD.
const WRAP_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// version || nonce || encrypted key || tag
pub(crate) const WRAPPED_LEN: usize = 1 + NONCE_LEN + KEY_LEN + TAG_LEN;
/// Domain separation for the AAD, so a wrap can never be mistaken for another AEAD use.
const AAD_LABEL: &[u8] = b"sealmail/wrapped-mailbox-key";

/// Binds a wrap to its format version and its mailbox: a wrapped key copied onto another
/// account's row does not unwrap there.
fn associated_data(version: u8, mailbox_id: &MailboxId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + 1 + mailbox_id.as_str().len());
    aad.extend_from_slice(AAD_LABEL);
    aad.push(version);
    aad.extend_from_slice(mailbox_id.as_str().as_bytes());
    aad
}

/// Encrypt `key` under `kek` for `mailbox_id` with a fresh random nonce.
pub(crate) fn wrap_key(kek: &Kek, mailbox_id: &MailboxId, key: &MailboxKey) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(Key::from_slice(&kek.0[..]));
    let nonce = random_bytes::<NONCE_LEN>();
    let mut sealed = Zeroizing::new(*key.as_bytes());
    let tag = cipher
        .encrypt_in_place_detached(
            XNonce::from_slice(&nonce),
            &associated_data(WRAP_VERSION, mailbox_id),
            &mut sealed[..],
        )
        .expect("a 32-byte message is far below the AEAD length limit");
    let mut blob = Vec::with_capacity(WRAPPED_LEN);
    blob.push(WRAP_VERSION);
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&sealed[..]);
    blob.extend_from_slice(&tag);
    blob
}

/// Decrypt a wrapped key. `None` when the KEK is wrong or the blob was damaged or tampered
/// with: the caller cannot and should not tell these apart.
pub(crate) fn unwrap_key(kek: &Kek, mailbox_id: &MailboxId, blob: &[u8]) -> Option<MailboxKey> {
    if blob.len() != WRAPPED_LEN || blob[0] != WRAP_VERSION {
        return None;
    }
    let (nonce, rest) = blob[1..].split_at(NONCE_LEN);
    let (sealed, tag) = rest.split_at(KEY_LEN);
    let cipher = XChaCha20Poly1305::new(Key::from_slice(&kek.0[..]));
    let mut opened = Zeroizing::new([0u8; KEY_LEN]);
    opened.copy_from_slice(sealed);
    cipher
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            &associated_data(blob[0], mailbox_id),
            &mut opened[..],
            Tag::from_slice(tag),
        )
        .ok()?;
    Some(MailboxKey::from_bytes(*opened))
}

/// Unwrap a mailbox key from its stored parts (a registry row or a backup manifest) with the
/// password: Argon2id, then the AEAD. [`Error::WrongPassword`] when it does not open.
pub fn unwrap_with_password(
    password: &str,
    mailbox_id: &MailboxId,
    kdf_salt: &[u8],
    kdf: &KdfParams,
    wrapped_key: &[u8],
) -> Result<MailboxKey> {
    let kek = derive_kek(password.as_bytes(), kdf_salt, kdf)?;
    unwrap_key(&kek, mailbox_id, wrapped_key).ok_or(Error::WrongPassword)
}

/// A fresh random salt.
pub(crate) fn new_salt() -> [u8; SALT_LEN] {
    random_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox_id(hex: &str) -> MailboxId {
        hex.parse().unwrap()
    }

    fn kek(password: &str, salt: &[u8]) -> Kek {
        derive_kek(password.as_bytes(), salt, &KdfParams::INSECURE_FOR_TESTS).unwrap()
    }

    #[test]
    fn wrap_then_unwrap_returns_the_key() {
        let id = mailbox_id("0123456789abcdef01234567");
        let key = MailboxKey::generate();
        let salt = new_salt();
        let blob = wrap_key(&kek("pw", &salt), &id, &key);
        assert_eq!(blob.len(), WRAPPED_LEN);
        let opened = unwrap_key(&kek("pw", &salt), &id, &blob).unwrap();
        assert_eq!(opened.as_bytes(), key.as_bytes());
    }

    #[test]
    fn wrong_password_salt_or_mailbox_does_not_unwrap() {
        let id = mailbox_id("0123456789abcdef01234567");
        let salt = new_salt();
        let blob = wrap_key(&kek("pw", &salt), &id, &MailboxKey::generate());
        assert!(unwrap_key(&kek("pW", &salt), &id, &blob).is_none());
        assert!(unwrap_key(&kek("pw", &new_salt()), &id, &blob).is_none());
        let other = mailbox_id("0123456789abcdef01234568");
        assert!(unwrap_key(&kek("pw", &salt), &other, &blob).is_none());
    }

    #[test]
    fn every_damaged_byte_is_detected() {
        let id = mailbox_id("00112233445566778899aabb");
        let salt = new_salt();
        let kek = kek("pw", &salt);
        let blob = wrap_key(&kek, &id, &MailboxKey::generate());
        for index in 0..blob.len() {
            let mut damaged = blob.clone();
            damaged[index] ^= 0x01;
            assert!(unwrap_key(&kek, &id, &damaged).is_none(), "byte {index}");
        }
        assert!(unwrap_key(&kek, &id, &blob[..blob.len() - 1]).is_none());
        assert!(unwrap_key(&kek, &id, &[]).is_none());
    }

    #[test]
    fn parameters_out_of_range_are_refused() {
        let too_little_memory = KdfParams {
            m_cost_kib: 1,
            ..KdfParams::INSECURE_FOR_TESTS
        };
        assert!(matches!(
            too_little_memory.validate(),
            Err(Error::InvalidArgument(_))
        ));
        let too_much_memory = KdfParams {
            m_cost_kib: u32::MAX,
            ..KdfParams::default()
        };
        assert!(matches!(
            too_much_memory.validate(),
            Err(Error::InvalidArgument(_))
        ));
        assert!(KdfParams::default().validate().is_ok());
    }
}
