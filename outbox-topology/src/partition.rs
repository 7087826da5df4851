//! The partition function of the partitioned topology: which of N partitions an event goes
//! to. It must be computable in any language, so producers, relays and consumers written in
//! other languages agree on it; it is written down here (and in the consuming guide) with
//! test vectors.
//!
//! **The function.** `partition = crc32(key) mod N`, where `crc32` is the CRC-32 of
//! IEEE 802.3 (zlib's `crc32`, Python's `zlib.crc32`, Go's `hash/crc32.ChecksumIEEE`, Java's
//! `java.util.zip.CRC32`, Node's `zlib.crc32`) over the UTF-8 bytes of the key, taken as an
//! unsigned 32-bit number, and `key` is
//!
//! - for an event with an ordering key, its **ordering scope**: `<tenant uuid>/<ordering
//!   key>`, or `-/<ordering key>` without a tenant (the database's `outbox_scope(tenant_id,
//!   ordering_key)`; the uuid in its lower-case hyphenated form);
//! - for an event without an ordering key (ordered after nothing), `#<event id>` (the
//!   event's uuid, lower-case hyphenated): such events spread over the partitions.
//!
//! Every event of one scope therefore goes to the same partition, whose queue has a single
//! active consumer: the scope's order survives any number of consumer processes.

/// The most partitions a deployment may have (the routing key's `{partition}` is at most
/// four digits).
pub const MAX_PARTITIONS: u32 = 1024;

/// The ordering scope's name, `<tenant uuid>/<key>` or `-/<key>` (the database's
/// `outbox_scope(tenant_id, ordering_key)`).
pub fn scope_name(tenant_id: Option<uuid::Uuid>, ordering_key: &str) -> String {
    match tenant_id {
        Some(tenant) => format!("{tenant}/{ordering_key}"),
        None => format!("-/{ordering_key}"),
    }
}

/// The text an event's partition is computed from: its scope's name, or `#<event id>` for an
/// event without an ordering key.
pub fn partition_key(
    tenant_id: Option<uuid::Uuid>,
    ordering_key: Option<&str>,
    event_id: uuid::Uuid,
) -> String {
    match ordering_key {
        Some(key) => scope_name(tenant_id, key),
        None => format!("#{event_id}"),
    }
}

/// `crc32(key) mod partitions` (IEEE CRC-32 of the UTF-8 bytes); partition 0 when
/// `partitions` is 0 or 1.
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    if partitions <= 1 {
        return 0;
    }
    crc32fast::hash(key.as_bytes()) % partitions
}

/// The partition of an event (see the module's documentation).
pub fn event_partition(
    tenant_id: Option<uuid::Uuid>,
    ordering_key: Option<&str>,
    event_id: uuid::Uuid,
    partitions: u32,
) -> u32 {
    partition_of(
        &partition_key(tenant_id, ordering_key, event_id),
        partitions,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: uuid::Uuid = uuid::Uuid::from_u128(0x0190a1b2_c3d4_7e5f_8a6b_7c8d9e0f1a2b);

    /// The documented test vectors (docs/guides/consuming.md), computed with Python's
    /// `zlib.crc32`: another language's implementation must give the same numbers.
    #[test]
    fn the_documented_test_vectors_hold() {
        let vectors: [(&str, u32, u32, u32); 5] = [
            ("-/ticket:42", 3_453_068_814, 6, 14),
            (
                "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b/ticket:42",
                2_195_258_825,
                1,
                9,
            ),
            (
                "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b/ticket:43",
                4_125_085_023,
                7,
                15,
            ),
            ("-/client:Zürich", 3_859_133_737, 1, 9),
            ("#0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b", 28_820_851, 3, 3),
        ];
        for (key, crc, of8, of16) in vectors {
            assert_eq!(crc32fast::hash(key.as_bytes()), crc, "{key}");
            assert_eq!(partition_of(key, 8), of8, "{key} of 8");
            assert_eq!(partition_of(key, 16), of16, "{key} of 16");
        }
    }

    #[test]
    fn keys_are_scopes_or_the_event_id() {
        assert_eq!(
            partition_key(Some(TENANT), Some("ticket:42"), uuid::Uuid::nil()),
            "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b/ticket:42"
        );
        assert_eq!(
            partition_key(None, Some("ticket:42"), TENANT),
            "-/ticket:42"
        );
        assert_eq!(
            partition_key(None, None, TENANT),
            "#0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b"
        );
        assert_eq!(
            event_partition(Some(TENANT), Some("ticket:43"), uuid::Uuid::nil(), 8),
            7
        );
        assert_eq!(partition_of("anything", 1), 0);
        assert_eq!(partition_of("anything", 0), 0);
    }

    #[test]
    fn scopes_spread_evenly_enough() {
        let mut counts = [0u32; 8];
        for key in 0..8000 {
            counts[partition_of(&scope_name(None, &format!("ticket:{key}")), 8) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (850..1150).contains(&c)),
            "{counts:?}"
        );
    }
}
