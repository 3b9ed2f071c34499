//! The hybrid sealing key pair of a mailbox: X25519 next to ML-KEM-768.
//!
//! Mail sealed to both keys stays confidential as long as either one holds: X25519 covers a flaw
//! in the young ML-KEM implementations, ML-KEM covers a future quantum computer.

use std::fmt;

use ml_kem::KeyExport;
use ml_kem::ml_kem_768::{DecapsulationKey, EncapsulationKey};
use ml_kem::{Key, Seed};
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey as X25519Public, StaticSecret as X25519Secret};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::key::random_bytes;

/// First byte of both serialized keys. A new key format gets a new number, and old keys keep
/// parsing for as long as mail sealed to them may sit in a queue.
pub const KEY_FORMAT_VERSION: u8 = 1;

pub(crate) const X25519_KEY_LEN: usize = 32;
/// FIPS 203, table 3: ML-KEM-768 encapsulation key size.
pub(crate) const ML_KEM_768_ENCAPSULATION_KEY_LEN: usize = 1184;
/// FIPS 203 seed form (d || z) of a decapsulation key, the form the standard recommends storing.
pub(crate) const ML_KEM_SEED_LEN: usize = 64;

/// Length of [`SealingPublicKey::to_bytes`]: version || X25519 public || ML-KEM-768 key.
pub const PUBLIC_KEY_LEN: usize = 1 + X25519_KEY_LEN + ML_KEM_768_ENCAPSULATION_KEY_LEN;
/// Length of [`SealingSecretKey::to_bytes`]: version || X25519 secret || ML-KEM-768 seed.
pub const SECRET_KEY_LEN: usize = 1 + X25519_KEY_LEN + ML_KEM_SEED_LEN;

/// Length of [`SealingPublicKey::key_id`].
pub const KEY_ID_LEN: usize = 8;

/// A freshly generated key pair: the public half goes to the registry, the secret half into the
/// encrypted mailbox file.
#[derive(Debug)]
pub struct SealingKeyPair {
    pub public: SealingPublicKey,
    pub secret: SealingSecretKey,
}

impl SealingKeyPair {
    /// A new key pair from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let x25519_bytes = Zeroizing::new(random_bytes::<X25519_KEY_LEN>());
        let ml_kem_seed = Zeroizing::new(random_bytes::<ML_KEM_SEED_LEN>());
        let secret = SealingSecretKey::from_parts(&x25519_bytes, &ml_kem_seed);
        Self {
            public: secret.public_key().clone(),
            secret,
        }
    }
}

/// The public half: anyone holding it can seal mail that only the mailbox owner can open.
#[derive(Clone)]
pub struct SealingPublicKey {
    x25519: X25519Public,
    ml_kem: EncapsulationKey,
    /// The serialized form, kept because every seal binds it into the key derivation.
    encoded: Vec<u8>,
}

impl SealingPublicKey {
    /// Parse the registry form written by [`SealingPublicKey::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != PUBLIC_KEY_LEN {
            return Err(Error::InvalidSealingKey(format!(
                "public key must be {PUBLIC_KEY_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        check_version(bytes[0], "public")?;
        let (x25519_bytes, ml_kem_bytes) = bytes[1..].split_at(X25519_KEY_LEN);
        let x25519_array: [u8; X25519_KEY_LEN] =
            x25519_bytes.try_into().expect("length checked above");
        let x25519 = X25519Public::from(x25519_array);
        if is_low_order(&x25519) {
            return Err(Error::InvalidSealingKey(
                "X25519 public key is a low-order point".to_owned(),
            ));
        }
        let ml_kem_key =
            Key::<EncapsulationKey>::try_from(ml_kem_bytes).expect("length checked above");
        // FIPS 203 section 7.2 input check: every coefficient must be reduced modulo q.
        let ml_kem = EncapsulationKey::new(&ml_kem_key).map_err(|_| {
            Error::InvalidSealingKey("ML-KEM-768 encapsulation key fails validation".to_owned())
        })?;
        Ok(Self {
            x25519,
            ml_kem,
            encoded: bytes.to_vec(),
        })
    }

    /// The registry form: version byte || X25519 public key || ML-KEM-768 encapsulation key.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encoded.clone()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.encoded
    }

    /// A short public fingerprint (truncated SHA-256 of the serialized key). Sealed items carry
    /// it so a drain with the wrong key can tell "not mine" from "damaged".
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        let digest = Sha256::digest(&self.encoded);
        digest[..KEY_ID_LEN]
            .try_into()
            .expect("SHA-256 is longer than a key id")
    }

    pub(crate) fn x25519(&self) -> &X25519Public {
        &self.x25519
    }

    pub(crate) fn ml_kem(&self) -> &EncapsulationKey {
        &self.ml_kem
    }

    fn from_parts(x25519: X25519Public, ml_kem: EncapsulationKey) -> Self {
        let mut encoded = Vec::with_capacity(PUBLIC_KEY_LEN);
        encoded.push(KEY_FORMAT_VERSION);
        encoded.extend_from_slice(x25519.as_bytes());
        encoded.extend_from_slice(ml_kem.to_bytes().as_slice());
        Self {
            x25519,
            ml_kem,
            encoded,
        }
    }
}

impl PartialEq for SealingPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.encoded == other.encoded
    }
}

impl Eq for SealingPublicKey {}

impl fmt::Debug for SealingPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealingPublicKey({})", hex::encode(self.key_id()))
    }
}

/// The secret half. Both parts wipe themselves on drop (`x25519-dalek` and `ml-kem` are built
/// with their `zeroize` features), and `Debug` never prints them.
pub struct SealingSecretKey {
    x25519: X25519Secret,
    ml_kem: DecapsulationKey,
    public: SealingPublicKey,
}

impl SealingSecretKey {
    /// Parse the form written by [`SealingSecretKey::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != SECRET_KEY_LEN {
            return Err(Error::InvalidSealingKey(format!(
                "secret key must be {SECRET_KEY_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        check_version(bytes[0], "secret")?;
        let mut x25519_bytes = Zeroizing::new([0u8; X25519_KEY_LEN]);
        x25519_bytes.copy_from_slice(&bytes[1..1 + X25519_KEY_LEN]);
        let mut seed = Zeroizing::new([0u8; ML_KEM_SEED_LEN]);
        seed.copy_from_slice(&bytes[1 + X25519_KEY_LEN..]);
        Ok(Self::from_parts(&x25519_bytes, &seed))
    }

    /// The storage form (version || X25519 secret || ML-KEM-768 seed), in a buffer that is wiped
    /// when dropped. It belongs only inside the encrypted mailbox file.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(SECRET_KEY_LEN));
        out.push(KEY_FORMAT_VERSION);
        out.extend_from_slice(self.x25519.as_bytes());
        let mut seed = self
            .ml_kem
            .to_seed()
            .expect("sealing keys are always built from a seed");
        out.extend_from_slice(seed.as_slice());
        zeroize::Zeroize::zeroize(&mut seed);
        out
    }

    /// The matching public key, derived from the secret parts.
    pub fn public_key(&self) -> &SealingPublicKey {
        &self.public
    }

    pub(crate) fn x25519(&self) -> &X25519Secret {
        &self.x25519
    }

    pub(crate) fn ml_kem(&self) -> &DecapsulationKey {
        &self.ml_kem
    }

    fn from_parts(
        x25519_bytes: &[u8; X25519_KEY_LEN],
        ml_kem_seed: &[u8; ML_KEM_SEED_LEN],
    ) -> Self {
        let x25519 = X25519Secret::from(*x25519_bytes);
        let mut seed = Seed::from(*ml_kem_seed);
        let ml_kem = DecapsulationKey::from_seed(seed);
        zeroize::Zeroize::zeroize(&mut seed);
        let public = SealingPublicKey::from_parts(
            X25519Public::from(&x25519),
            ml_kem.encapsulation_key().clone(),
        );
        Self {
            x25519,
            ml_kem,
            public,
        }
    }
}

impl fmt::Debug for SealingSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealingSecretKey([REDACTED])")
    }
}

fn check_version(version: u8, which: &str) -> Result<()> {
    if version == KEY_FORMAT_VERSION {
        Ok(())
    } else {
        Err(Error::InvalidSealingKey(format!(
            "{which} key format version {version} is not supported (expected {KEY_FORMAT_VERSION})"
        )))
    }
}

/// True for the points of order dividing 8, with which every X25519 exchange yields zero.
///
/// Every clamped scalar is a multiple of 8, so one exchange with any fixed scalar decides it.
pub(crate) fn is_low_order(point: &X25519Public) -> bool {
    let probe = X25519Secret::from([0x5a; X25519_KEY_LEN]);
    !probe.diffie_hellman(point).was_contributory()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_round_trips_and_has_documented_layout() {
        let pair = SealingKeyPair::generate();
        let bytes = pair.public.to_bytes();
        assert_eq!(bytes.len(), PUBLIC_KEY_LEN);
        assert_eq!(bytes[0], KEY_FORMAT_VERSION);
        assert_eq!(SealingPublicKey::from_bytes(&bytes).unwrap(), pair.public);
    }

    #[test]
    fn secret_key_round_trips_to_the_same_public_key() {
        let pair = SealingKeyPair::generate();
        let bytes = pair.secret.to_bytes();
        assert_eq!(bytes.len(), SECRET_KEY_LEN);
        let parsed = SealingSecretKey::from_bytes(&bytes).unwrap();
        assert_eq!(parsed.public_key(), &pair.public);
        assert_eq!(parsed.to_bytes().as_slice(), bytes.as_slice());
    }

    #[test]
    fn generated_pairs_differ() {
        let a = SealingKeyPair::generate();
        let b = SealingKeyPair::generate();
        assert_ne!(a.public, b.public);
        assert_ne!(
            a.secret.to_bytes().as_slice(),
            b.secret.to_bytes().as_slice()
        );
    }

    #[test]
    fn wrong_length_and_version_are_rejected_with_clear_messages() {
        let pair = SealingKeyPair::generate();
        let public = pair.public.to_bytes();
        let message = SealingPublicKey::from_bytes(&public[..100])
            .unwrap_err()
            .to_string();
        assert!(message.contains("1217 bytes, got 100"), "{message}");

        let mut bad_version = public.clone();
        bad_version[0] = 9;
        let message = SealingPublicKey::from_bytes(&bad_version)
            .unwrap_err()
            .to_string();
        assert!(message.contains("version 9"), "{message}");

        let secret = pair.secret.to_bytes();
        assert!(matches!(
            SealingSecretKey::from_bytes(&secret[..SECRET_KEY_LEN - 1]),
            Err(Error::InvalidSealingKey(_))
        ));
        let mut bad_version = secret.to_vec();
        bad_version[0] = 0;
        assert!(matches!(
            SealingSecretKey::from_bytes(&bad_version),
            Err(Error::InvalidSealingKey(_))
        ));
    }

    #[test]
    fn low_order_x25519_point_is_rejected() {
        let mut public = SealingKeyPair::generate().public.to_bytes();
        // u = 0 is the neutral point: a recipient key that would make the X25519 half useless.
        public[1..1 + X25519_KEY_LEN].fill(0);
        let error = SealingPublicKey::from_bytes(&public).unwrap_err();
        assert!(error.to_string().contains("low-order"), "{error}");
    }

    #[test]
    fn malformed_ml_kem_key_is_rejected() {
        let mut public = SealingKeyPair::generate().public.to_bytes();
        // All-ones coefficients (4095) exceed q = 3329, which FIPS 203 requires to be refused.
        public[1 + X25519_KEY_LEN..].fill(0xff);
        let error = SealingPublicKey::from_bytes(&public).unwrap_err();
        assert!(error.to_string().contains("ML-KEM"), "{error}");
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let pair = SealingKeyPair::generate();
        let shown = format!("{:?}", pair.secret);
        assert_eq!(shown, "SealingSecretKey([REDACTED])");
        let pair_shown = format!("{pair:?}");
        let secret_hex = hex::encode(&pair.secret.to_bytes()[1..]);
        assert!(!pair_shown.contains(&secret_hex[..16]));
        assert!(pair_shown.contains("[REDACTED]"));
    }
}
