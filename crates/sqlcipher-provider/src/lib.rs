//! A crypto provider for the SQLCipher that `rusqlite` bundles, written with RustCrypto crates.
//!
//! SQLCipher encrypts every page it writes with AES-256-CBC under a fresh random IV and
//! authenticates it with an HMAC; it asks a *provider* for each of those operations. The
//! bundled build uses the system's OpenSSL 3, whose provider does per page what could be done
//! once: it fetches the HMAC and cipher implementations from OpenSSL's method store (locks and
//! name lookups), allocates and frees a context for each, and draws the IV from `RAND_bytes`
//! under a mutex that SQLCipher holds across all connections of the process. On the direct
//! SMTP delivery path that bookkeeping cost about 7% of all CPU, next to 12% for the actual
//! AES and SHA-256 work.
//!
//! This provider does the same cryptography with the `aes`/`cbc` (AES-NI), `hmac`/`sha2`
//! (SHA-NI) and `pbkdf2` crates, and draws IVs from a ChaCha20 generator that each connection
//! seeds from the operating system. Pages are bit-for-bit what SQLCipher's OpenSSL provider
//! writes (same cipher, same MAC over the same bytes): files move freely between the two, which
//! the tests check in both directions.
//!
//! [`install`] registers it once per process; connections keyed afterwards use it. It refuses
//! (and OpenSSL stays in use) unless the linked SQLCipher is the version whose provider
//! interface this crate mirrors, so a dependency upgrade cannot silently pair it with a
//! different structure layout.

use hmac::{Hmac, Mac};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use std::ffi::{c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use zeroize::Zeroizing;

/// The SQLCipher release whose `sqlcipher_provider` structure [`Provider`] mirrors, as
/// `PRAGMA cipher_version` reports it.
pub const SUPPORTED_SQLCIPHER_VERSION: &str = "4.20.0 community";

/// The name `PRAGMA cipher_provider` reports for connections keyed with this provider.
pub const PROVIDER_NAME: &str = "rustcrypto";

const SQLITE_OK: c_int = 0;
const SQLITE_ERROR: c_int = 1;

/// SQLCipher's `SQLCIPHER_ENCRYPT` (its decrypt mode is 0).
const MODE_ENCRYPT: c_int = 1;
const MODE_DECRYPT: c_int = 0;

/// SQLCipher's HMAC and PBKDF2 algorithm numbers.
const ALGORITHM_SHA1: c_int = 0;
const ALGORITHM_SHA256: c_int = 1;
const ALGORITHM_SHA512: c_int = 2;

const KEY_LEN: usize = 32;
const IV_LEN: usize = 16;
const BLOCK_LEN: usize = 16;

/// Setting this environment variable to `openssl` keeps SQLCipher's OpenSSL provider: an
/// operator's way back if this one is ever in doubt, and a benchmark's baseline.
pub const PROVIDER_ENV: &str = "SEALMAIL_SQLCIPHER_PROVIDER";

/// Why [`install`] left SQLCipher's own provider in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallError {
    /// [`PROVIDER_ENV`] asks for SQLCipher's OpenSSL provider.
    KeptOpenSslByRequest,
    /// The linked SQLCipher is another release than [`SUPPORTED_SQLCIPHER_VERSION`].
    UnsupportedVersion(String),
    /// SQLCipher could not be asked (an in-memory connection failed).
    Sqlite(String),
    /// `sqlcipher_register_provider` returned this SQLite error code.
    Register(i32),
    /// SQLCipher could not allocate the provider structure.
    OutOfMemory,
}

impl std::fmt::Display for InstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::KeptOpenSslByRequest => write!(f, "{PROVIDER_ENV}=openssl asks for OpenSSL's"),
            Self::UnsupportedVersion(found) => write!(
                f,
                "SQLCipher {found:?} is linked; this provider mirrors {SUPPORTED_SQLCIPHER_VERSION:?}"
            ),
            Self::Sqlite(error) => write!(f, "SQLCipher could not be queried: {error}"),
            Self::Register(code) => write!(f, "SQLCipher refused the provider (code {code})"),
            Self::OutOfMemory => f.write_str("SQLCipher could not allocate the provider"),
        }
    }
}

impl std::error::Error for InstallError {}

/// Make this provider SQLCipher's default for every connection keyed from now on in this
/// process (connections keyed before keep theirs; both read and write the same format),
/// unless [`PROVIDER_ENV`] is `openssl`. Idempotent: later calls return the first call's
/// outcome.
pub fn install() -> Result<(), InstallError> {
    static OUTCOME: OnceLock<Result<(), InstallError>> = OnceLock::new();
    OUTCOME
        .get_or_init(|| {
            if std::env::var(PROVIDER_ENV).is_ok_and(|choice| choice == "openssl") {
                return Err(InstallError::KeptOpenSslByRequest);
            }
            register()
        })
        .clone()
}

/// Whether a keyed connection uses this provider.
pub fn is_active(conn: &rusqlite::Connection) -> rusqlite::Result<bool> {
    let name: String = conn.query_row("PRAGMA cipher_provider", [], |row| row.get(0))?;
    Ok(name == PROVIDER_NAME)
}

fn register() -> Result<(), InstallError> {
    // Opening a connection initializes SQLite and, through it, SQLCipher, which must have
    // registered its own provider (and created its mutexes) before ours goes on top.
    let conn =
        rusqlite::Connection::open_in_memory().map_err(|e| InstallError::Sqlite(e.to_string()))?;
    let version: String = conn
        .query_row("PRAGMA cipher_version", [], |row| row.get(0))
        .map_err(|e| InstallError::Sqlite(e.to_string()))?;
    if version != SUPPORTED_SQLCIPHER_VERSION {
        return Err(InstallError::UnsupportedVersion(version));
    }
    // SAFETY: SQLCipher frees every registered provider with `sqlcipher_free` at shutdown, so
    // the structure must come from `sqlcipher_malloc`; the size is that of the C structure,
    // which `Provider` mirrors for the version checked above.
    let provider =
        unsafe { ffi::sqlcipher_malloc(std::mem::size_of::<Provider>() as u64) }.cast::<Provider>();
    if provider.is_null() {
        return Err(InstallError::OutOfMemory);
    }
    // SAFETY: `provider` is a fresh allocation of the right size, aligned for any C object
    // (SQLite's allocator guarantees 8-byte alignment, all `Provider` needs); writing a whole
    // value initializes it without reading the old contents.
    unsafe { provider.write(Provider::rustcrypto()) };
    // SAFETY: the provider is fully initialized, lives until SQLCipher frees it at shutdown,
    // and its functions uphold the contracts of SQLCipher's provider interface (below).
    let code = unsafe { ffi::sqlcipher_register_provider(provider) };
    if code == SQLITE_OK {
        Ok(())
    } else {
        Err(InstallError::Register(code))
    }
}

/// Test support: make the provider that was SQLCipher's default before [`install`] the default
/// again, or this one, so a test can write a file with one and read it with the other.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// Make `name` (`"openssl"` or [`PROVIDER_NAME`]) the default provider for connections keyed
    /// from now on. Returns false if no registered provider has that name.
    pub fn make_default(name: &str) -> bool {
        // SAFETY: SQLCipher's providers form a list it owns and never frees before shutdown;
        // re-registering one that is already on the list only moves it to the front (it
        // handles that case explicitly, without calling `init` again).
        unsafe {
            let mut current = ffi::sqlcipher_get_provider();
            while !current.is_null() {
                let provider = &*current;
                if let Some(get_name) = provider.get_provider_name {
                    let found = std::ffi::CStr::from_ptr(get_name(std::ptr::null_mut()));
                    if found.to_bytes() == name.as_bytes() {
                        return ffi::sqlcipher_register_provider(current) == SQLITE_OK;
                    }
                }
                current = provider.next;
            }
        }
        false
    }
}

mod ffi {
    use super::Provider;
    use std::ffi::{c_int, c_void};

    // The symbols live in the SQLCipher amalgamation that libsqlite3-sys compiles and links.
    use libsqlite3_sys as _;

    unsafe extern "C" {
        pub fn sqlcipher_register_provider(provider: *mut Provider) -> c_int;
        pub fn sqlcipher_get_provider() -> *mut Provider;
        pub fn sqlcipher_malloc(size: u64) -> *mut c_void;
    }
}

/// SQLCipher 4.20's `struct sqlcipher_provider`, field for field.
#[repr(C)]
pub struct Provider {
    init: Option<unsafe extern "C" fn() -> c_int>,
    shutdown: Option<unsafe extern "C" fn()>,
    get_provider_name: Option<unsafe extern "C" fn(*mut c_void) -> *const c_char>,
    add_random: Option<unsafe extern "C" fn(*mut c_void, *const c_void, c_int) -> c_int>,
    random: Option<unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> c_int>,
    hmac: Option<
        unsafe extern "C" fn(
            *mut c_void,
            c_int,
            *const u8,
            c_int,
            *const u8,
            c_int,
            *const u8,
            c_int,
            *mut u8,
        ) -> c_int,
    >,
    kdf: Option<
        unsafe extern "C" fn(
            *mut c_void,
            c_int,
            *const u8,
            c_int,
            *const u8,
            c_int,
            c_int,
            c_int,
            *mut u8,
        ) -> c_int,
    >,
    cipher: Option<
        unsafe extern "C" fn(
            *mut c_void,
            c_int,
            *const u8,
            c_int,
            *const u8,
            *const u8,
            c_int,
            *mut u8,
        ) -> c_int,
    >,
    get_cipher: Option<unsafe extern "C" fn(*mut c_void) -> *const c_char>,
    get_key_sz: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
    get_iv_sz: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
    get_block_sz: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
    get_hmac_sz: Option<unsafe extern "C" fn(*mut c_void, c_int) -> c_int>,
    ctx_init: Option<unsafe extern "C" fn(*mut *mut c_void) -> c_int>,
    ctx_free: Option<unsafe extern "C" fn(*mut *mut c_void) -> c_int>,
    fips_status: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
    get_provider_version: Option<unsafe extern "C" fn(*mut c_void) -> *const c_char>,
    next: *mut Provider,
}

impl Provider {
    fn rustcrypto() -> Self {
        Provider {
            init: None,
            shutdown: None,
            get_provider_name: Some(provider_name),
            add_random: Some(add_random),
            random: Some(random),
            hmac: Some(hmac),
            kdf: Some(kdf),
            cipher: Some(cipher),
            get_cipher: Some(cipher_name),
            get_key_sz: Some(key_size),
            get_iv_sz: Some(iv_size),
            get_block_sz: Some(block_size),
            get_hmac_sz: Some(hmac_size),
            ctx_init: Some(context_new),
            ctx_free: Some(context_free),
            fips_status: Some(fips_status),
            get_provider_version: Some(provider_version),
            next: std::ptr::null_mut(),
        }
    }
}

/// Per-connection state: the IV generator. SQLCipher uses a connection's context from one
/// thread at a time, so it needs no lock (OpenSSL's `RAND_bytes` is called under a
/// process-wide mutex).
struct Context {
    rng: ChaCha20Rng,
}

impl Context {
    fn seeded() -> Option<Self> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).ok()?;
        Some(Context {
            rng: ChaCha20Rng::from_seed(*seed),
        })
    }
}

/// Run `work`, turning a panic into `SQLITE_ERROR`: unwinding must not cross into C.
fn guarded(work: impl FnOnce() -> Option<()>) -> c_int {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(Some(())) => SQLITE_OK,
        _ => SQLITE_ERROR,
    }
}

/// A byte slice from a C pointer and length; `None` for a null pointer or a negative length.
///
/// # Safety
/// A non-null `ptr` must point to `len` readable bytes that stay valid and unmodified for `'a`.
unsafe fn input<'a>(ptr: *const u8, len: c_int) -> Option<&'a [u8]> {
    let len = usize::try_from(len).ok()?;
    if ptr.is_null() {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    Some(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A mutable byte slice from a C pointer and length; `None` for a null pointer or a negative
/// length.
///
/// # Safety
/// A non-null `ptr` must point to `len` writable bytes that nothing else reads or writes for `'a`.
unsafe fn output<'a>(ptr: *mut u8, len: usize) -> Option<&'a mut [u8]> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    Some(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

unsafe extern "C" fn provider_name(_ctx: *mut c_void) -> *const c_char {
    c"rustcrypto".as_ptr()
}

unsafe extern "C" fn provider_version(_ctx: *mut c_void) -> *const c_char {
    c"sealmail-sqlcipher-provider 0.1 (aes 0.8, sha2 0.10, pbkdf2 0.12, ChaCha20 IVs)".as_ptr()
}

unsafe extern "C" fn cipher_name(_ctx: *mut c_void) -> *const c_char {
    c"aes-256-cbc".as_ptr()
}

unsafe extern "C" fn key_size(_ctx: *mut c_void) -> c_int {
    KEY_LEN as c_int
}

unsafe extern "C" fn iv_size(_ctx: *mut c_void) -> c_int {
    IV_LEN as c_int
}

unsafe extern "C" fn block_size(_ctx: *mut c_void) -> c_int {
    BLOCK_LEN as c_int
}

unsafe extern "C" fn fips_status(_ctx: *mut c_void) -> c_int {
    0
}

unsafe extern "C" fn hmac_size(_ctx: *mut c_void, algorithm: c_int) -> c_int {
    match algorithm {
        ALGORITHM_SHA1 => 20,
        ALGORITHM_SHA256 => 32,
        ALGORITHM_SHA512 => 64,
        _ => 0,
    }
}

/// `ctx_init(void **ctx)`: allocate a connection's context.
unsafe extern "C" fn context_new(ctx: *mut *mut c_void) -> c_int {
    if ctx.is_null() {
        return SQLITE_ERROR;
    }
    guarded(|| {
        let context = Box::new(Context::seeded()?);
        // SAFETY: `ctx` is non-null and points to SQLCipher's context slot.
        unsafe { ctx.write(Box::into_raw(context).cast()) };
        Some(())
    })
}

/// `ctx_free(void **ctx)`: free a context made by [`context_new`] and clear the slot.
unsafe extern "C" fn context_free(ctx: *mut *mut c_void) -> c_int {
    if ctx.is_null() {
        return SQLITE_OK;
    }
    // SAFETY: `ctx` is non-null and points to a slot that holds null or a pointer from
    // `context_new`, which SQLCipher frees once.
    unsafe {
        let context = ctx.read().cast::<Context>();
        if !context.is_null() {
            drop(Box::from_raw(context));
        }
        ctx.write(std::ptr::null_mut());
    }
    SQLITE_OK
}

/// `random(ctx, buffer, length)`: fill `buffer` with `length` random bytes (page IVs and the
/// rest of each page's reserved area, salts).
unsafe extern "C" fn random(ctx: *mut c_void, buffer: *mut c_void, length: c_int) -> c_int {
    guarded(|| {
        let out = usize::try_from(length).ok()?;
        // SAFETY: SQLCipher passes a buffer of `length` bytes that it does not touch meanwhile.
        let out = unsafe { output(buffer.cast(), out) }?;
        let context = ctx.cast::<Context>();
        if context.is_null() {
            // No connection context (never the case in SQLCipher 4.20, which always creates
            // one first): straight from the operating system.
            return getrandom::fill(out).ok();
        }
        // SAFETY: a non-null context comes from `context_new` and is used by one connection,
        // on one thread at a time.
        unsafe { (*context).rng.fill_bytes(out) };
        Some(())
    })
}

/// `add_random(ctx, buffer, length)` (`PRAGMA cipher_add_random`): mix caller entropy into
/// this connection's generator by reseeding it from SHA-256 of its own output and the input.
unsafe extern "C" fn add_random(ctx: *mut c_void, buffer: *const c_void, length: c_int) -> c_int {
    use sha2::Digest;
    guarded(|| {
        // SAFETY: SQLCipher passes `length` readable bytes.
        let extra = unsafe { input(buffer.cast(), length) }?;
        let context = ctx.cast::<Context>();
        if context.is_null() {
            return Some(());
        }
        // SAFETY: as in `random`.
        let context = unsafe { &mut *context };
        let mut own = Zeroizing::new([0u8; 32]);
        context.rng.fill_bytes(own.as_mut());
        let mut hasher = sha2::Sha256::new();
        hasher.update(own.as_ref());
        hasher.update(extra);
        let seed = Zeroizing::new(<[u8; 32]>::from(hasher.finalize()));
        context.rng = ChaCha20Rng::from_seed(*seed);
        Some(())
    })
}

/// `hmac(ctx, algorithm, key, key_sz, in, in_sz, in2, in2_sz, out)`: the MAC of `in || in2`
/// (a page's ciphertext and IV, then its page number) into `out`, which has room for the
/// algorithm's output size.
unsafe extern "C" fn hmac(
    _ctx: *mut c_void,
    algorithm: c_int,
    key: *const u8,
    key_sz: c_int,
    data: *const u8,
    data_sz: c_int,
    data2: *const u8,
    data2_sz: c_int,
    out: *mut u8,
) -> c_int {
    guarded(|| {
        // SAFETY: SQLCipher passes readable buffers of the given sizes; `in2` may be null.
        let (key, data) = unsafe { (input(key, key_sz)?, input(data, data_sz)?) };
        let data2 = if data2.is_null() {
            None
        } else {
            // SAFETY: as above: a non-null `in2` points to `in2_sz` readable bytes.
            Some(unsafe { input(data2, data2_sz) }?)
        };
        fn mac<M: Mac + hmac::digest::KeyInit>(
            key: &[u8],
            data: &[u8],
            data2: Option<&[u8]>,
            out: *mut u8,
        ) -> Option<()> {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key).ok()?;
            mac.update(data);
            if let Some(data2) = data2 {
                mac.update(data2);
            }
            let tag = mac.finalize().into_bytes();
            // SAFETY: SQLCipher's output buffer holds `get_hmac_sz(algorithm)` bytes, the
            // length of this tag, and overlaps no input.
            let out = unsafe { output(out, tag.len()) }?;
            out.copy_from_slice(&tag);
            Some(())
        }
        match algorithm {
            ALGORITHM_SHA1 => mac::<Hmac<sha1::Sha1>>(key, data, data2, out),
            ALGORITHM_SHA256 => mac::<Hmac<sha2::Sha256>>(key, data, data2, out),
            ALGORITHM_SHA512 => mac::<Hmac<sha2::Sha512>>(key, data, data2, out),
            _ => None,
        }
    })
}

/// `kdf(ctx, algorithm, pass, pass_sz, salt, salt_sz, iterations, key_sz, key)`: PBKDF2 with
/// HMAC over the algorithm's hash (SQLCipher derives the HMAC key from the page key this way,
/// and a key from a passphrase).
unsafe extern "C" fn kdf(
    _ctx: *mut c_void,
    algorithm: c_int,
    pass: *const u8,
    pass_sz: c_int,
    salt: *const u8,
    salt_sz: c_int,
    iterations: c_int,
    key_sz: c_int,
    key: *mut u8,
) -> c_int {
    guarded(|| {
        // SAFETY: SQLCipher passes readable buffers of the given sizes.
        let (pass, salt) = unsafe { (input(pass, pass_sz)?, input(salt, salt_sz)?) };
        let iterations = u32::try_from(iterations).ok().filter(|&n| n > 0)?;
        let key_len = usize::try_from(key_sz).ok()?;
        // SAFETY: SQLCipher's key buffer holds `key_sz` bytes and overlaps no input.
        let key = unsafe { output(key, key_len) }?;
        match algorithm {
            ALGORITHM_SHA1 => pbkdf2::pbkdf2::<Hmac<sha1::Sha1>>(pass, salt, iterations, key),
            ALGORITHM_SHA256 => pbkdf2::pbkdf2::<Hmac<sha2::Sha256>>(pass, salt, iterations, key),
            ALGORITHM_SHA512 => pbkdf2::pbkdf2::<Hmac<sha2::Sha512>>(pass, salt, iterations, key),
            _ => return None,
        }
        .ok()
    })
}

/// `cipher(ctx, mode, key, key_sz, iv, in, in_sz, out)`: AES-256-CBC without padding over
/// `in_sz` bytes (a page less its reserved area, a multiple of the block size) into `out`, a
/// separate buffer.
unsafe extern "C" fn cipher(
    _ctx: *mut c_void,
    mode: c_int,
    key: *const u8,
    key_sz: c_int,
    iv: *const u8,
    data: *const u8,
    data_sz: c_int,
    out: *mut u8,
) -> c_int {
    use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
    guarded(|| {
        if key_sz as usize != KEY_LEN
            || data_sz < 0
            || !(data_sz as usize).is_multiple_of(BLOCK_LEN)
        {
            return None;
        }
        // SAFETY: SQLCipher passes a key of `key_sz` bytes and an IV of `get_iv_sz` bytes.
        let (key, iv) = unsafe { (input(key, key_sz)?, input(iv, IV_LEN as c_int)?) };
        let len = data_sz as usize;
        let (data_start, out_start) = (data as usize, out as usize);
        if data_start < out_start + len && out_start < data_start + len {
            // Overlapping (or the same) buffers: SQLCipher 4.20 always decrypts and
            // encrypts from the page into its own separate buffer.
            return None;
        }
        // SAFETY: two disjoint buffers of `len` bytes (checked above), the input readable,
        // the output writable and untouched by anything else meanwhile.
        let (data, out) = unsafe { (input(data, data_sz)?, output(out, len)?) };
        match mode {
            MODE_ENCRYPT => cbc::Encryptor::<aes::Aes256>::new_from_slices(key, iv)
                .ok()?
                .encrypt_padded_b2b_mut::<NoPadding>(data, out)
                .ok()
                .map(drop),
            MODE_DECRYPT => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
                .ok()?
                .decrypt_padded_b2b_mut::<NoPadding>(data, out)
                .ok()
                .map(drop),
            _ => None,
        }
    })
}
