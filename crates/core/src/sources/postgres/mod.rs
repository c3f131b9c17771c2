//! PostgreSQL: connections, logical dumps, base backups, the custom-archive reader,
//! backup-time truth, comparison of a restored database with that truth and with the
//! backup's definitions, and throw-away clusters.

pub mod archive;
pub mod cluster;
pub mod compare;
pub mod conn;
pub mod definitions;
pub(crate) mod leftovers;
pub mod logical;
pub mod physical;
pub mod script;
pub(crate) mod server_copy;
pub mod stream;
pub mod text;
pub mod truth;
