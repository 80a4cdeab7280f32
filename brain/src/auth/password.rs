//! argon2id password hashing with the configured cost (PHC strings), run
//! off the async executor.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    pub time: u32,
    pub memory_kib: u32,
    pub parallelism: u32,
}

impl Cost {
    pub fn from_settings(s: &crate::settings::Settings) -> Cost {
        Cost {
            time: s.argon2_time_cost as u32,
            memory_kib: s.argon2_memory_cost as u32,
            parallelism: s.argon2_parallelism as u32,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password hashing task failed")]
    Join,
}

fn hasher(cost: Cost) -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(cost.memory_kib, cost.time, cost.parallelism, Some(32))
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes synchronously; prefer [`hash`] on async paths.
pub fn hash_blocking(password: &str, cost: Cost) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    hasher(cost)?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

pub async fn hash(password: String, cost: Cost) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || hash_blocking(&password, cost))
        .await
        .map_err(|_| PasswordError::Join)?
}

/// Verifies against a stored PHC string (any argon2 parameters).
pub fn verify_blocking(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Whether a stored hash should be recomputed with `cost` after a
/// successful login: it is not argon2id v19, or every configured dimension
/// is at least the stored one and one is larger. Lowering a setting never
/// downgrades stored hashes.
pub fn needs_rehash(phc: &str, cost: Cost) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    if parsed.algorithm.as_str() != "argon2id" || parsed.version != Some(0x13) {
        return true;
    }
    let get = |k: &str| parsed.params.get_decimal(k).unwrap_or(0);
    let stored = [get("m"), get("t"), get("p")];
    let wanted = [cost.memory_kib, cost.time, cost.parallelism];
    wanted.iter().zip(&stored).all(|(w, s)| w >= s)
        && wanted.iter().zip(&stored).any(|(w, s)| w > s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rehash_only_upgrades() {
        let low = Cost {
            time: 1,
            memory_kib: 8192,
            parallelism: 1,
        };
        let h = hash_blocking("pw", low).unwrap();
        assert!(!needs_rehash(&h, low));
        assert!(needs_rehash(&h, Cost { time: 2, ..low }));
        assert!(needs_rehash(
            &h,
            Cost {
                memory_kib: 16384,
                ..low
            }
        ));
        // A mixed change (one up, one down) keeps the stored hash.
        assert!(!needs_rehash(
            &h,
            Cost {
                time: 2,
                memory_kib: 4096,
                parallelism: 1
            }
        ));
        assert!(!needs_rehash("garbage", low));
    }

    #[test]
    fn phc_string_carries_the_configured_cost() {
        let cost = Cost {
            time: 1,
            memory_kib: 8192,
            parallelism: 1,
        };
        let h = hash_blocking("Tr0ub4dor&3xyz", cost).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"), "{h}");
        assert!(verify_blocking("Tr0ub4dor&3xyz", &h));
        assert!(!verify_blocking("wrong", &h));
        assert!(!verify_blocking("x", "not a phc string"));
    }
}
