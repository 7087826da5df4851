//! Claim tokens that name the relay process holding them, so a lease can end with that
//! process instead of only with its wall-clock deadline.
//!
//! Every running relay holds a session advisory lock `(OWNER_LOCK_CLASS, owner)` on a
//! database connection of its own, for as long as it runs. Its claim tokens are UUIDs of
//! version 8 (RFC 9562's "custom" layout) whose first 32 bits are `owner`. A relay killed
//! by SIGKILL, the OOM killer or a lost node loses that session (its sockets close with it),
//! the lock goes with it, and the next claim of any relay reaps the leases whose owner's
//! lock nobody holds — at once, instead of when their lease runs out. Tokens of any other
//! version (claims made without an owner, or by an older relay) end only with their
//! deadline, as before.

use uuid::Uuid;

/// The first key of the owners' advisory locks (`'outb'` as bytes).
pub const OWNER_LOCK_CLASS: i32 = 0x6f75_7462;

/// A claim token of `owner`: version 8, `owner` in its first 32 bits, `random` in the rest
/// (but for the version and variant bits).
pub fn owner_token(owner: u32, random: u128) -> Uuid {
    let mut bytes = random.to_be_bytes();
    let (head, _) = bytes.split_at_mut(4);
    head.copy_from_slice(&owner.to_be_bytes());
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The owner a token names, when it is an owner's token (version 8).
pub fn token_owner(token: Uuid) -> Option<u32> {
    if token.get_version_num() != 8 {
        return None;
    }
    let bytes = token.as_bytes();
    let head: [u8; 4] = bytes.first_chunk::<4>().copied()?;
    Some(u32::from_be_bytes(head))
}

/// The owner as the advisory lock function takes it (an `int4`: the same 32 bits).
pub fn owner_lock_key(owner: u32) -> i32 {
    i32::from_be_bytes(owner.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_owner_and_stays_unique() {
        for owner in [0, 1, 0x7fff_ffff, 0x8000_0000, u32::MAX] {
            let a = owner_token(owner, 1);
            let b = owner_token(owner, 2);
            assert_ne!(a, b, "the random part keeps tokens of one owner apart");
            assert_eq!(token_owner(a), Some(owner));
            assert_eq!(a.get_version_num(), 8);
            assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
            // The first 8 hex digits of the text form are the owner (what the SQL reads).
            assert_eq!(&a.to_string()[..8], format!("{owner:08x}"));
        }
    }

    #[test]
    fn other_tokens_name_no_owner() {
        assert_eq!(token_owner(Uuid::now_v7()), None);
        assert_eq!(token_owner(Uuid::new_v4()), None);
        assert_eq!(token_owner(Uuid::nil()), None);
    }

    #[test]
    fn the_lock_key_is_the_same_bits() {
        assert_eq!(owner_lock_key(1), 1);
        assert_eq!(owner_lock_key(u32::MAX), -1);
        assert_eq!(owner_lock_key(0x8000_0000), i32::MIN);
        assert_eq!(OWNER_LOCK_CLASS, 1_869_968_482);
    }
}
