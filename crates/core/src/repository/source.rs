//! A one-entry [`ReadSource`] over any reader: how a dump stream enters a snapshot.

use std::{io::Read, path::PathBuf, sync::Mutex};

use rustic_core::{
    repofile::{Metadata, Node, NodeType},
    ReadSource, ReadSourceEntry, RusticResult,
};

/// A single file at `path` whose content is read from a stream (once).
pub struct StreamSource<R> {
    path: PathBuf,
    reader: Mutex<Option<R>>,
}

impl<R> StreamSource<R> {
    /// The stream `reader` stored as `path` (an absolute path inside the snapshot).
    pub fn new(path: PathBuf, reader: R) -> Self {
        Self {
            path,
            reader: Mutex::new(Some(reader)),
        }
    }
}

impl<R: Read + Send + 'static> ReadSource for StreamSource<R> {
    type Open = R;
    type Iter = std::option::IntoIter<RusticResult<ReadSourceEntry<R>>>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(None)
    }

    fn entries(&self) -> Self::Iter {
        let reader = self.reader.lock().ok().and_then(|mut r| r.take());
        let name = self.path.file_name().unwrap_or_default().to_os_string();
        let meta = Metadata {
            mode: Some(0o600),
            mtime: Some(jiff::Timestamp::now()),
            ..Metadata::default()
        };
        reader
            .map(|r| {
                Ok(ReadSourceEntry {
                    path: self.path.clone(),
                    node: Node::new_node(&name, NodeType::File, meta),
                    open: Some(r),
                })
            })
            .into_iter()
    }
}
