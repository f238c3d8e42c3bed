//! The product itself, pure: key material, profiles, the key lifecycle, issuing and verifying
//! tokens, login links and JWK Sets. Nothing here imports tonic, prost or the generated proto
//! types, touches a file or reads the environment; time comes in as an argument or through a
//! [`clock::Clock`] handed in. `tests/api/layering.rs` keeps it that way.
//!
//! Reading order: [`clock`], [`keys`], [`login`], [`rotation`], [`profile`], [`remote`],
//! [`random`], [`token`], [`lifecycle`], [`jwks`], then [`policy`] (who may call what) and [`audit`] (how
//! audit records name a subject).

pub mod audit;
pub mod clock;
pub mod jwks;
pub mod keys;
pub mod lifecycle;
pub mod login;
pub mod policy;
pub mod profile;
pub mod random;
pub mod remote;
pub mod rotation;
pub mod token;
