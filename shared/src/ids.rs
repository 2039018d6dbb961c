//! Server-generated, opaque, time-ordered ids: a short prefix naming the kind
//! of object and a UUIDv7 (`ctr_0193…`). Lexical order is creation order,
//! which keyset paging relies on.

/// A new id for an object of the kind `prefix` (e.g. `"ctr"`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Whether `id` has the shape of an id of kind `prefix`.
pub fn is_id(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_have_their_prefix_and_sort_by_creation() {
        let a = new_id("ctr");
        let b = new_id("ctr");
        assert!(is_id("ctr", &a), "{a}");
        assert!(a < b);
        assert!(!is_id("pay", &a));
        assert!(!is_id("ctr", "ctr_xyz"));
        assert!(!is_id("ctr", "ctr_"));
    }
}
