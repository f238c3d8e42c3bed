//! Where tokens get their randomness. Signatures (ECDSA and RSA-PSS) draw from the system's
//! generator on every call, as ring requires. Token ids (`jti`) and refresh family ids, which
//! are public as soon as the token is, come from a pool of the same generator's bytes, filled
//! 4 KiB at a time: one `getrandom(2)` per 256 ids instead of one per token (measured with
//! strace: Issue made 1.67 system calls a call, Health/Check 0.64).

use std::sync::Mutex;

use ring::error::Unspecified;
use ring::rand::{SecureRandom as _, SystemRandom};

/// Bytes of system randomness drawn at once for ids.
const POOL_BYTES: usize = 4096;

/// The length of a token or family id before base64url, in bytes.
pub const ID_BYTES: usize = 16;

/// The service's source of randomness: the system generator, and a pool of its bytes for ids.
pub struct Random {
    system: SystemRandom,
    pool: Mutex<Pool>,
}

struct Pool {
    bytes: Box<[u8; POOL_BYTES]>,
    /// Bytes before this have been handed out (and wiped).
    next: usize,
}

impl Random {
    /// An empty pool over the system generator; the first id fills it.
    pub fn new() -> Random {
        Random {
            system: SystemRandom::new(),
            pool: Mutex::new(Pool {
                bytes: Box::new([0; POOL_BYTES]),
                next: POOL_BYTES,
            }),
        }
    }

    /// The system generator itself, for signatures.
    pub fn system(&self) -> &SystemRandom {
        &self.system
    }

    /// Sixteen fresh random bytes for an id; no two calls get the same pool bytes.
    pub fn id(&self) -> Result<[u8; ID_BYTES], Unspecified> {
        // A panic cannot happen while the lock is held; a poisoned pool is still sound.
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.next + ID_BYTES > POOL_BYTES {
            self.system.fill(&mut pool.bytes[..])?;
            pool.next = 0;
        }
        let start = pool.next;
        let taken = &mut pool.bytes[start..start + ID_BYTES];
        let mut id = [0; ID_BYTES];
        id.copy_from_slice(taken);
        // Handed-out bytes do not stay in memory.
        taken.fill(0);
        pool.next = start + ID_BYTES;
        Ok(id)
    }
}

impl Default for Random {
    fn default() -> Random {
        Random::new()
    }
}

impl std::fmt::Debug for Random {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Random")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_across_refills_and_the_pool_keeps_none_it_gave() {
        let random = Random::new();
        let ids: Vec<[u8; ID_BYTES]> = (0..3 * POOL_BYTES / ID_BYTES + 5)
            .map(|_| random.id().unwrap())
            .collect();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        assert!(ids.iter().all(|id| id != &[0; ID_BYTES]));
        let pool = random.pool.lock().unwrap();
        assert!(pool.bytes[..pool.next].iter().all(|&b| b == 0));
    }
}
