//! Sealing one message to a mailbox's public key, and opening it with the secret key.
//!
//! Format version 1 (all lengths in bytes):
//!
//! ```text
//! header  = version (1) = 0x01
//!           key id (8)                 truncated SHA-256 of the recipient public key
//!           X25519 ephemeral key (32)
//!           ML-KEM-768 ciphertext (1088)
//! body    = XChaCha20-Poly1305(zstd(message)) || tag (16)
//! ```
//!
//! Key schedule: `okm = HKDF-SHA256(salt = "sealmail/seal/v1", ikm = ss_mlkem || ss_x25519,
//! info = header || recipient public key || len(context) as u32 BE || context)`, split into the
//! AEAD key (32) and nonce (24). Binding both ciphertexts and the recipient key into the key
//! derivation makes the combiner safe even if one KEM fails (the X-Wing argument); the whole header
//! is the AAD as well, so any changed byte fails authentication. Each seal uses fresh ephemeral
//! secrets for both KEMs, so the key and nonce are used once: no nonce needs to be stored.
//!
//! The optional `context` is bound but not stored: the queue passes the item id, so a sealed file
//! renamed to another id (a replay past the store's de-duplication) no longer opens.

use std::cell::RefCell;
use std::io::Read;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, Tag, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use ml_kem::ml_kem_768::Ciphertext;
use ml_kem::{B32, Decapsulate};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey as X25519Public, StaticSecret as X25519Secret};
use zeroize::{Zeroize, Zeroizing};

use super::keys::{KEY_ID_LEN, SealingPublicKey, SealingSecretKey, X25519_KEY_LEN};
use crate::error::{Error, Result};
use crate::key::random_bytes;

/// First byte of every sealed item.
pub const SEAL_FORMAT_VERSION: u8 = 1;

/// The largest message [`seal`] accepts and [`open`] will decompress: a hostile item cannot make
/// a drain allocate more than this.
pub const MAX_SEALED_MESSAGE_LEN: usize = 64 * 1024 * 1024;

/// FIPS 203, table 3: ML-KEM-768 ciphertext size.
const ML_KEM_768_CIPHERTEXT_LEN: usize = 1088;
const TAG_LEN: usize = 16;
const AEAD_KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

const KEY_ID_OFFSET: usize = 1;
const EPHEMERAL_OFFSET: usize = KEY_ID_OFFSET + KEY_ID_LEN;
const ML_KEM_CT_OFFSET: usize = EPHEMERAL_OFFSET + X25519_KEY_LEN;
/// Length of the version 1 header, which is also the AEAD's associated data.
pub const SEAL_HEADER_LEN: usize = ML_KEM_CT_OFFSET + ML_KEM_768_CIPHERTEXT_LEN;
/// No sealed item is shorter than its header and tag (a real one also holds a zstd frame).
pub const MIN_SEALED_LEN: usize = SEAL_HEADER_LEN + TAG_LEN;

const HKDF_SALT: &[u8] = b"sealmail/seal/v1";
/// zstd level 3 (the library default): most of the gain on mail text at a few hundred MB/s.
const ZSTD_LEVEL: i32 = 3;

/// Seal `message` so that only the holder of the matching secret key can read it.
pub fn seal(recipient: &SealingPublicKey, message: &[u8]) -> Result<Vec<u8>> {
    seal_with_context(recipient, &[], message)
}

/// Open an item made by [`seal`]. Any damage, truncation, or a different key gives
/// [`Error::SealedItemCorrupt`]; nothing is returned unless the whole item authenticates.
pub fn open(secret: &SealingSecretKey, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    open_with_context(secret, &[], sealed)
}

/// [`seal`], with `context` bound into the key derivation. The same context must be given to
/// [`open_with_context`].
pub fn seal_with_context(
    recipient: &SealingPublicKey,
    context: &[u8],
    message: &[u8],
) -> Result<Vec<u8>> {
    if message.len() > MAX_SEALED_MESSAGE_LEN {
        return Err(Error::MessageTooLarge {
            size: message.len() as u64,
            limit: MAX_SEALED_MESSAGE_LEN as u64,
        });
    }

    // Wiped on drop (x25519-dalek's `zeroize` feature), like the shared secret derived from it.
    let ephemeral = X25519Secret::from(random_bytes::<X25519_KEY_LEN>());
    let x25519_shared = ephemeral.diffie_hellman(recipient.x25519());
    if !x25519_shared.was_contributory() {
        // Keys parsed by `SealingPublicKey::from_bytes` never get here; kept as a guard.
        return Err(Error::InvalidSealingKey(
            "X25519 public key is a low-order point".to_owned(),
        ));
    }
    // FIPS 203 ML-KEM.Encaps: the 32 bytes `m` must be fresh and uniformly random; they come from
    // the same OS source as every other key here (this is what `encapsulate_with_rng` does).
    let mut encapsulation_seed = B32::from(random_bytes::<32>());
    let (ml_kem_ciphertext, ml_kem_shared) = recipient
        .ml_kem()
        .encapsulate_deterministic(&encapsulation_seed);
    encapsulation_seed.zeroize();

    let compressed = Zeroizing::new(compress(message)?);

    let mut sealed = Vec::with_capacity(SEAL_HEADER_LEN + compressed.len() + TAG_LEN);
    sealed.push(SEAL_FORMAT_VERSION);
    sealed.extend_from_slice(&recipient.key_id());
    sealed.extend_from_slice(X25519Public::from(&ephemeral).as_bytes());
    sealed.extend_from_slice(ml_kem_ciphertext.as_slice());
    debug_assert_eq!(sealed.len(), SEAL_HEADER_LEN);

    let mut ml_kem_shared = ml_kem_shared;
    let (cipher, nonce) = derive_cipher(
        ml_kem_shared.as_slice(),
        x25519_shared.as_bytes(),
        &sealed,
        recipient,
        context,
    );
    ml_kem_shared.zeroize();

    sealed.extend_from_slice(&compressed);
    let (header, body) = sealed.split_at_mut(SEAL_HEADER_LEN);
    let tag = cipher
        .encrypt_in_place_detached(&nonce, header, body)
        .map_err(|_| Error::Crypto("message too long for XChaCha20-Poly1305"))?;
    sealed.extend_from_slice(tag.as_slice());
    Ok(sealed)
}

/// zstd-compress `message` with this thread's compression context: making a fresh context
/// (and clearing its tables) for every message cost as much as a fifth of the compression.
fn compress(message: &[u8]) -> Result<Vec<u8>> {
    thread_local! {
        static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { RefCell::new(None) };
    }
    let failed = |_| Error::Crypto("zstd compression failed");
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match &mut *slot {
            Some(compressor) => compressor,
            None => slot.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(failed)?),
        };
        compressor.compress(message).map_err(failed)
    })
}

/// [`open`], for an item sealed with [`seal_with_context`].
pub fn open_with_context(
    secret: &SealingSecretKey,
    context: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    if sealed.is_empty() {
        return Err(Error::SealedItemCorrupt("empty item"));
    }
    if sealed[0] != SEAL_FORMAT_VERSION {
        return Err(Error::SealedItemCorrupt("unknown format version"));
    }
    if sealed.len() < MIN_SEALED_LEN {
        return Err(Error::SealedItemCorrupt("truncated"));
    }
    let (header, rest) = sealed.split_at(SEAL_HEADER_LEN);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);

    let recipient = secret.public_key();
    let key_id = &header[KEY_ID_OFFSET..EPHEMERAL_OFFSET];
    if !bool::from(key_id.ct_eq(&recipient.key_id())) {
        return Err(Error::SealedItemCorrupt(
            "sealed to another key, or key id damaged",
        ));
    }

    let ephemeral_bytes: [u8; X25519_KEY_LEN] = header[EPHEMERAL_OFFSET..ML_KEM_CT_OFFSET]
        .try_into()
        .expect("header length checked above");
    let x25519_shared = secret
        .x25519()
        .diffie_hellman(&X25519Public::from(ephemeral_bytes));
    if !x25519_shared.was_contributory() {
        return Err(Error::SealedItemCorrupt("low-order ephemeral key"));
    }
    let ml_kem_ciphertext =
        Ciphertext::try_from(&header[ML_KEM_CT_OFFSET..]).expect("header length checked above");
    // ML-KEM decapsulation never fails: a damaged ciphertext yields an unrelated key (implicit
    // rejection), which the AEAD below then refuses.
    let mut ml_kem_shared = secret.ml_kem().decapsulate(&ml_kem_ciphertext);
    let (cipher, nonce) = derive_cipher(
        ml_kem_shared.as_slice(),
        x25519_shared.as_bytes(),
        header,
        recipient,
        context,
    );
    ml_kem_shared.zeroize();

    let mut compressed = Zeroizing::new(body.to_vec());
    cipher
        .decrypt_in_place_detached(
            &nonce,
            header,
            compressed.as_mut_slice(),
            Tag::from_slice(tag),
        )
        .map_err(|_| {
            Error::SealedItemCorrupt("authentication failed: tampered, or sealed to another key")
        })?;
    decompress_bounded(&compressed)
}

/// The key id an item says it was sealed to, so a queue drain can set aside items for another
/// key without calling them damaged. `None` if the item is too short or of an unknown version.
pub fn sealed_key_id(sealed: &[u8]) -> Option<[u8; KEY_ID_LEN]> {
    if sealed.len() < MIN_SEALED_LEN || sealed[0] != SEAL_FORMAT_VERSION {
        return None;
    }
    sealed[KEY_ID_OFFSET..EPHEMERAL_OFFSET].try_into().ok()
}

fn derive_cipher(
    ml_kem_shared: &[u8],
    x25519_shared: &[u8],
    header: &[u8],
    recipient: &SealingPublicKey,
    context: &[u8],
) -> (XChaCha20Poly1305, XNonce) {
    let mut input_key = Zeroizing::new([0u8; 64]);
    input_key[..32].copy_from_slice(ml_kem_shared);
    input_key[32..].copy_from_slice(x25519_shared);

    let context_len = u32::try_from(context.len()).expect("context is an item id, not gigabytes");
    let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), input_key.as_slice());
    let mut output_key = Zeroizing::new([0u8; AEAD_KEY_LEN + NONCE_LEN]);
    hkdf.expand_multi_info(
        &[
            header,
            recipient.as_bytes(),
            &context_len.to_be_bytes(),
            context,
        ],
        output_key.as_mut_slice(),
    )
    .expect("56 bytes is far below HKDF-SHA256's output limit");
    let cipher = XChaCha20Poly1305::new_from_slice(&output_key[..AEAD_KEY_LEN])
        .expect("key length is fixed");
    let nonce = *XNonce::from_slice(&output_key[AEAD_KEY_LEN..]);
    (cipher, nonce)
}

/// Decompress an authenticated zstd payload without ever holding more than
/// [`MAX_SEALED_MESSAGE_LEN`] bytes, whatever size the frame claims.
fn decompress_bounded(compressed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let declared = zstd::zstd_safe::get_frame_content_size(compressed)
        .map_err(|_| Error::SealedItemCorrupt("payload is not a zstd frame"))?;
    let capacity = match declared {
        Some(size) if size > MAX_SEALED_MESSAGE_LEN as u64 => {
            return Err(Error::SealedItemCorrupt("message exceeds the size limit"));
        }
        // Sized up front so the plaintext is not copied through reallocations that leave
        // unwiped fragments behind.
        Some(size) => size as usize,
        None => 0,
    };
    let decoder = zstd::stream::read::Decoder::with_buffer(compressed)
        .map_err(|_| Error::SealedItemCorrupt("payload is not a zstd frame"))?;
    let mut message = Zeroizing::new(Vec::with_capacity(capacity));
    decoder
        .take(MAX_SEALED_MESSAGE_LEN as u64 + 1)
        .read_to_end(&mut message)
        .map_err(|_| Error::SealedItemCorrupt("payload does not decompress"))?;
    if message.len() > MAX_SEALED_MESSAGE_LEN {
        return Err(Error::SealedItemCorrupt("message exceeds the size limit"));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::SealingKeyPair;

    #[test]
    fn header_layout_matches_the_documented_format() {
        let pair = SealingKeyPair::generate();
        let sealed = seal(&pair.public, b"hello").unwrap();
        assert_eq!(SEAL_HEADER_LEN, 1 + 8 + 32 + 1088);
        assert_eq!(sealed[0], SEAL_FORMAT_VERSION);
        assert_eq!(sealed_key_id(&sealed), Some(pair.public.key_id()));
        assert!(sealed.len() >= MIN_SEALED_LEN);
    }

    #[test]
    fn context_is_bound() {
        let pair = SealingKeyPair::generate();
        let sealed = seal_with_context(&pair.public, b"item-a", b"hello").unwrap();
        assert_eq!(
            open_with_context(&pair.secret, b"item-a", &sealed)
                .unwrap()
                .as_slice(),
            b"hello"
        );
        assert!(matches!(
            open_with_context(&pair.secret, b"item-b", &sealed),
            Err(Error::SealedItemCorrupt(_))
        ));
        assert!(matches!(
            open(&pair.secret, &sealed),
            Err(Error::SealedItemCorrupt(_))
        ));
    }

    #[test]
    fn oversized_message_is_refused_before_sealing() {
        let pair = SealingKeyPair::generate();
        let big = vec![b'a'; MAX_SEALED_MESSAGE_LEN + 1];
        assert!(matches!(
            seal(&pair.public, &big),
            Err(Error::MessageTooLarge { .. })
        ));
    }

    #[test]
    fn authenticated_zip_bomb_is_refused() {
        // Anyone with the public key can seal: the size cap must hold for authentic items too.
        let bomb = zstd::bulk::compress(&vec![0u8; MAX_SEALED_MESSAGE_LEN + 1], 3).unwrap();
        assert!(matches!(
            decompress_bounded(&bomb),
            Err(Error::SealedItemCorrupt("message exceeds the size limit"))
        ));
        // Same bomb as a streamed frame that does not declare its size.
        let mut streamed = Vec::new();
        {
            let mut encoder = zstd::stream::write::Encoder::new(&mut streamed, 3).unwrap();
            std::io::copy(
                &mut std::io::repeat(0).take(MAX_SEALED_MESSAGE_LEN as u64 + 10),
                &mut encoder,
            )
            .unwrap();
            encoder.finish().unwrap();
        }
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&streamed).unwrap(),
            None
        );
        assert!(matches!(
            decompress_bounded(&streamed),
            Err(Error::SealedItemCorrupt("message exceeds the size limit"))
        ));
    }
}
