//! Images of engine state for checkpoints: plain data that a checkpoint stores and
//! a resume applies to a freshly instantiated store.
//!
//! A store is restored by instantiating the same module with the same imports in
//! the same order ([`Store::instantiate_for_restore`], which skips segment
//! initialization and the start function: their effects are in the image), then
//! applying a [`StoreImage`]. Memory *contents* are not part of the image: they
//! live in the page store.

use crate::{store::Store, Error};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The mutable state of a store, apart from memory contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreImage {
    /// The cell of every global, in allocation order.
    pub globals: Vec<u64>,
    /// The cells of every table, in allocation order.
    pub tables: Vec<Vec<u64>>,
    /// Which element segments were dropped.
    pub elems_dropped: Vec<bool>,
    /// Which data segments were dropped.
    pub datas_dropped: Vec<bool>,
    /// The size of every memory, in wasm pages.
    pub memory_pages: Vec<u32>,
}

impl Store {
    /// Captures the store's state (not memory contents).
    pub fn image(&self) -> StoreImage {
        StoreImage {
            globals: self.globals.iter().map(|g| g.cell).collect(),
            tables: self.tables.iter().map(|t| t.cells.clone()).collect(),
            elems_dropped: self.elems.iter().map(|e| e.is_empty()).collect(),
            datas_dropped: self.datas.iter().map(|d| d.is_empty()).collect(),
            memory_pages: self
                .memories
                .iter()
                .map(ferrite_heap::LinearMemory::size_wasm_pages)
                .collect(),
        }
    }

    /// Applies an image captured from a store built the same way.
    ///
    /// # Errors
    /// [`Error::Usage`] if the image does not fit this store (another module or
    /// other imports): nothing is changed then.
    pub fn apply_image(&mut self, image: &StoreImage) -> Result<(), Error> {
        let fits = image.globals.len() == self.globals.len()
            && image.tables.len() == self.tables.len()
            && image.elems_dropped.len() == self.elems.len()
            && image.datas_dropped.len() == self.datas.len()
            && image.memory_pages.len() == self.memories.len()
            && image
                .memory_pages
                .iter()
                .zip(&self.memories)
                .all(|(pages, memory)| {
                    *pages >= memory.size_wasm_pages()
                        && memory.maximum_wasm_pages().is_none_or(|max| *pages <= max)
                })
            && image.tables.iter().zip(&self.tables).all(|(cells, table)| {
                table
                    .ty
                    .limits
                    .maximum
                    .is_none_or(|max| cells.len() as u64 <= u64::from(max))
            });
        if !fits {
            return Err(Error::usage("checkpoint state does not match this module"));
        }
        for (global, cell) in self.globals.iter_mut().zip(&image.globals) {
            global.cell = *cell;
        }
        for (table, cells) in self.tables.iter_mut().zip(&image.tables) {
            table.cells.clone_from(cells);
        }
        for (elem, dropped) in self.elems.iter_mut().zip(&image.elems_dropped) {
            if *dropped {
                *elem = Box::new([]);
            }
        }
        for (data, dropped) in self.datas.iter_mut().zip(&image.datas_dropped) {
            if *dropped {
                *data = Arc::new([]);
            }
        }
        for (memory, pages) in self.memories.iter_mut().zip(&image.memory_pages) {
            let delta = pages - memory.size_wasm_pages();
            if delta > 0 && memory.grow(delta).is_none() {
                return Err(Error::usage(
                    "checkpoint memory size exceeds the memory's limit",
                ));
            }
        }
        Ok(())
    }
}
