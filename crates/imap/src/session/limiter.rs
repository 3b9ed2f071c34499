//! Failed-login rate limiting is shared with POP3 and lives in sealmail-core.

pub use sealmail_core::login_limiter::LoginLimiter;
