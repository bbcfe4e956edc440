//! The snapshot: the compact, read-only file through which jitd tells the modules what is live.
//!
//! `format` fixes the byte layout (see docs/snapshot-format.md), `writer` builds a file image
//! from [`crate::types::SnapshotData`] (pure: bytes out, into a `Vec` or a caller's [`Sink`]), `reader` validates an image once and
//! answers lookups by binary search without allocating, `index` lets a lookup read one shard
//! of the file, and `listing` lets `getpwent` read it a checked chunk at a time.

pub mod file;
pub mod format;
pub mod generation;
pub mod index;
mod index_writer;
pub mod keyed;
pub mod listing;
pub mod reader;
pub mod writer;

pub use reader::{AccountView, GateView, GroupView, MemberView, Snapshot, SnapshotError};
pub use writer::{
    build_snapshot, build_snapshot_into, build_snapshot_with, BuildOptions, Sink, WriteError,
};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod index_tests;

#[cfg(test)]
mod base_tests;

#[cfg(test)]
mod delta_tests;

#[cfg(test)]
mod listing_tests;

#[cfg(test)]
mod keyed_tests;

#[cfg(test)]
mod large_file_tests;
