//! Names Sluice gives to things it creates beside the user's: staging tables, lock keys.
//!
//! One rule for every connector, so two target tables can never share a staging table and
//! two jobs can never share a lock by accident:
//!
//! * [`side_table_name`]: `<table><suffix>` when it fits the engine's identifier limit, else
//!   the table name cut at a character boundary, `_`, eight hex digits of a hash of the *whole*
//!   name, and the suffix. Two names sharing a long prefix get different side tables.
//! * [`lock_key`]: a 64-bit key per job or per target table, stable across builds and
//!   platforms (FNV-1a), for advisory locks and lock files.

/// Suffix of the staging table `write = "overwrite"` fills before swapping it in.
pub const STAGE_SUFFIX: &str = "__sluice_stage";

/// PostgreSQL's identifier limit (bytes); MySQL's is 64 characters, so the byte limit serves
/// both.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// FNV-1a, 64 bits: stable across builds, unlike std's hasher.
pub fn stable_hash(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `name` + `suffix`, shortened with a hash of the whole name to at most `max_bytes` bytes.
pub fn side_table_name(name: &str, suffix: &str, max_bytes: usize) -> String {
    let full = format!("{name}{suffix}");
    if full.len() <= max_bytes {
        return full;
    }
    let tag = format!("_{:08x}", stable_hash(name) as u32);
    let room = max_bytes.saturating_sub(suffix.len() + tag.len());
    let mut cut = room.min(name.len());
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{tag}{suffix}", &name[..cut])
}

/// The staging table of target table `name` (see [`side_table_name`]).
pub fn stage_name(name: &str) -> String {
    side_table_name(name, STAGE_SUFFIX, MAX_IDENTIFIER_BYTES)
}

/// How long taking a lock waits for its holder to let go. A process killed a moment ago
/// holds its locks until the server notices its connection closed; a live run holds them
/// until it ends, and is reported once this has passed.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a lock protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockScope {
    /// One job (whatever its state directory).
    Job,
    /// One target table (whatever job writes it).
    Table,
}

/// The lock key of a job or of a target table (`where_` names the target database, so equal
/// table names in different databases do not share a lock), and a readable name for messages.
pub fn lock_key(scope: LockScope, where_: &str, name: &str) -> (i64, String) {
    let label = match scope {
        LockScope::Job => format!("sluice job {name:?}"),
        LockScope::Table => format!("sluice table {name} in {where_}"),
    };
    let kind = match scope {
        LockScope::Job => "job",
        LockScope::Table => "table",
    };
    (
        stable_hash(&format!("sluice:{kind}:{where_}:{name}")) as i64,
        label,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_names_fit_and_stay_unique() {
        assert_eq!(stage_name("orders"), "orders__sluice_stage");
        let a = format!("{}_a", "x".repeat(60));
        let b = format!("{}_b", "x".repeat(60));
        let (sa, sb) = (stage_name(&a), stage_name(&b));
        assert!(sa.len() <= MAX_IDENTIFIER_BYTES && sb.len() <= MAX_IDENTIFIER_BYTES);
        assert_ne!(sa, sb, "names sharing a long prefix get different stages");
        assert!(sa.ends_with(STAGE_SUFFIX));
        // Multi-byte characters are never cut in half.
        let s = stage_name(&"é".repeat(40));
        assert!(s.len() <= MAX_IDENTIFIER_BYTES, "{s}");
    }

    #[test]
    fn lock_keys_differ_by_scope_place_and_name() {
        let j = lock_key(LockScope::Job, "db", "copy").0;
        assert_ne!(j, lock_key(LockScope::Table, "db", "copy").0);
        assert_ne!(j, lock_key(LockScope::Job, "db2", "copy").0);
        assert_eq!(j, lock_key(LockScope::Job, "db", "copy").0);
        // FNV-1a test vector: persisted names must not change between builds.
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
