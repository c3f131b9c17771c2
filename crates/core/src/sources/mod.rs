//! What lifeboat backs up. Each source knows how to produce streams and how to check a
//! restored copy; storage is reached only through [`crate::repository`].

pub mod postgres;
