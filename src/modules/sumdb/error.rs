//! What can fail while verifying against a checksum database: one enum
//! that says exactly which check failed, in one line.

/// Why a lookup or a tree could not be verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SumdbError {
    /// The module path or version asked for is not valid.
    #[error("cannot look up {module}@{version}: {reason}")]
    BadRequest {
        /// The module path, as given.
        module: String,
        /// The version, as given.
        version: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The database answered 404 or 410: it has no record of this version.
    #[error("checksum database {db} has no record of {module}@{version}")]
    NotFound {
        /// The database name.
        db: String,
        /// The module path.
        module: String,
        /// The version.
        version: String,
    },

    /// Fetching from the database failed (network, status, size bound).
    #[error("checksum database {db}: fetching {path} failed: {reason}")]
    Fetch {
        /// The database name.
        db: String,
        /// The path below the database's base URL.
        path: String,
        /// What went wrong, one line.
        reason: String,
    },

    /// An answer is malformed (lookup, record, note or tile).
    #[error("checksum database {db} sent a malformed {what}: {reason}")]
    Malformed {
        /// The database name.
        db: String,
        /// Which answer: `lookup`, `tree note`, `tile tile/8/0/000`.
        what: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The tree note is not signed by the configured key, or its
    /// signature is bad.
    #[error("checksum database {db}: {reason}")]
    Signature {
        /// The database name.
        db: String,
        /// The note error: no signature by the key, or an invalid one.
        reason: String,
    },

    /// The record is not in the signed tree the lookup came with.
    #[error("checksum database {db}: record {id} for {module}@{version} is not in its signed tree of size {size}")]
    NotInTree {
        /// The database name.
        db: String,
        /// The module path.
        module: String,
        /// The version.
        version: String,
        /// The record id the lookup gave.
        id: u64,
        /// The size of the signed tree.
        size: u64,
    },

    /// The database served tiles that do not hash to the tree it signed.
    #[error("checksum database {db} served tiles that do not match its signed tree of size {size}: {detail}")]
    TileMismatch {
        /// The database name.
        db: String,
        /// The size of the signed tree.
        size: u64,
        /// Which tile or tiles.
        detail: String,
    },

    /// Two signed trees are not consistent: the database forked. The kept
    /// tree is unchanged.
    #[error(
        "SECURITY ERROR: checksum database {db} forked: its signed tree of size {new_size} ({new_hash}) \
         does not extend the verified tree of size {old_size} ({old_hash}), which is kept"
    )]
    Fork {
        /// The database name.
        db: String,
        /// Size of the tree verified before (kept).
        old_size: u64,
        /// Root hash of the tree verified before, base64.
        old_hash: String,
        /// Size of the refused tree.
        new_size: u64,
        /// Root hash of the refused tree, base64.
        new_hash: String,
    },

    /// The latest verified tree could not be loaded or saved.
    #[error("checksum database {db}: the verified tree store failed: {reason}")]
    Store {
        /// The database name.
        db: String,
        /// What went wrong.
        reason: String,
    },
}

impl SumdbError {
    /// Whether the database itself misbehaved (a signature, proof or tile
    /// that does not check out, or a fork), as opposed to being unreachable
    /// or asked something invalid.
    pub fn is_misbehavior(&self) -> bool {
        matches!(
            self,
            SumdbError::Signature { .. }
                | SumdbError::NotInTree { .. }
                | SumdbError::TileMismatch { .. }
                | SumdbError::Fork { .. }
        )
    }
}
